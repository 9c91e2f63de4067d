"""Server benchmark: start-up, prompt latency, cached re-run, queue throughput and memory, side by
side with ComfyUI's numbers measured on the same kind of machine (shared/FACTS.md).

    python bench/server_bench.py [--runs 50] [--queued 1000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import psutil

ROOT = Path(__file__).resolve().parent.parent
COMFYUI = {"startup_s": 7.0, "latency_ms": 3.4, "cached_ms": 2.2}


def two_nodes(color: int) -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        },
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def start(base: Path) -> tuple[subprocess.Popen[bytes], str, float]:
    """Launch main.py and time it to the first answered request."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--port", str(port)],
        cwd=base,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(f"{url}/prompt") as response:
                    if response.status == 200:
                        return process, url, time.perf_counter() - began
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.005)


async def timed_prompt(
    session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse, url: str, prompt: dict[str, Any]
) -> float:
    began = time.perf_counter()
    async with session.post(f"{url}/prompt", json={"prompt": prompt, "client_id": "bench"}) as response:
        prompt_id = (await response.json())["prompt_id"]
    async for message in ws:
        event = json.loads(message.data)
        if event["type"] == "execution_success" and event["data"]["prompt_id"] == prompt_id:
            return (time.perf_counter() - began) * 1000
    raise RuntimeError("websocket closed")


async def drain(session: aiohttp.ClientSession, url: str) -> None:
    while True:
        async with session.get(f"{url}/prompt") as response:
            if (await response.json())["exec_info"]["queue_remaining"] == 0:
                return
        await asyncio.sleep(0.01)


async def bench(runs: int, queued: int) -> dict[str, float]:
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        startups = []
        for _ in range(3):
            process, url, seconds = await start(Path(folder))
            startups.append(seconds)
            if len(startups) < 3:
                process.terminate()
                process.wait()
        results["startup_s"] = statistics.median(startups)
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(f"{url}/ws?clientId=bench") as ws,
            ):
                for color in range(10):  # warm-up: torch import, first PNG encoder use
                    await timed_prompt(session, ws, url, two_nodes(color))
                rss_10 = psutil.Process(process.pid).memory_info().rss
                fresh = [await timed_prompt(session, ws, url, two_nodes(1000 + i)) for i in range(runs)]
                cached = [await timed_prompt(session, ws, url, two_nodes(1000)) for _ in range(runs)]
                results["latency_ms"] = statistics.median(fresh)
                results["cached_ms"] = statistics.median(cached)
                began = time.perf_counter()
                for i in range(queued):
                    async with session.post(
                        f"{url}/prompt", json={"prompt": two_nodes(100_000 + i)}
                    ) as response:
                        await response.read()
                submitted = time.perf_counter() - began
                await drain(session, url)
                results["submit_per_s"] = queued / submitted
                results["throughput_per_s"] = queued / (time.perf_counter() - began)
                results["rss_10_mb"] = rss_10 / 2**20
                results["rss_1000_mb"] = psutil.Process(process.pid).memory_info().rss / 2**20
        finally:
            process.terminate()
            process.wait()
    return results


def report(results: dict[str, float], queued: int) -> None:
    rows = [
        ("start-up to first answer (s)", "startup_s", "6.5–7.8"),
        ("POST /prompt → execution_success, 2 nodes (ms, median)", "latency_ms", "3.4"),
        ("fully cached re-run (ms, median)", "cached_ms", "2.2"),
        (f"{queued} queued prompts: submit rate (prompts/s)", "submit_per_s", "—"),
        (f"{queued} queued prompts: end to end (prompts/s)", "throughput_per_s", "—"),
        ("resident memory after 10 prompts (MiB)", "rss_10_mb", "—"),
        (f"resident memory after {queued + 10 + 100} prompts (MiB)", "rss_1000_mb", "—"),
    ]
    print(f"{'measure':<58} {'Loom':>10} {'ComfyUI':>10}")
    for label, key, comfy in rows:
        print(f"{label:<58} {results[key]:>10.2f} {comfy:>10}")
    ratios = ", ".join(f"{key.split('_')[0]} ×{COMFYUI[key] / results[key]:.1f}" for key in COMFYUI)
    growth = results["rss_1000_mb"] - results["rss_10_mb"]
    print(
        f"Loom vs ComfyUI (higher is faster for Loom): {ratios}; "
        f"{results['throughput_per_s']:.0f} prompts/s queued; memory +{growth:.1f} MiB over {queued} prompts"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--queued", type=int, default=1000)
    args = parser.parse_args()
    report(asyncio.run(bench(args.runs, args.queued)), args.queued)


if __name__ == "__main__":
    main()
