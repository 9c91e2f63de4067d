"""Scale-out on Ray, measured: model loads with affinity routing against round-robin, and throughput
with one worker against two, on one mixed workload, in one run.

The workload: text-to-image prompts (64², a few Euler steps) over three tiny random SD1 checkpoints
written by this script, the checkpoint of each prompt drawn with weights 3:2:1 in runs (users iterate
on one model for a few prompts, then switch), every prompt with its own seed. All prompts are queued
at once; a load is a CheckpointLoaderSimple that executed (not served from the worker's cache), read
from the websocket events. Three real servers in turn (`main.py --ray --ray-workers N
[--ray-routing round-robin]`), each with a fresh queue. On this 2-core shared machine the second
worker competes with the first for the same cores, so the throughput ratio says more about
dispatch overhead than about a second GPU.

Run: `python bench/ray_routing.py [--prompts 100] [--port 18720]` (needs requirements-ray.txt).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHECKPOINTS = ("bench_a.safetensors", "bench_b.safetensors", "bench_c.safetensors")
# Each worker runs one prompt on this fourth checkpoint before the clock starts (imports, first-run
# set-up), so every run starts warm and with no workload model loaded anywhere.
WARM_UP = "bench_warm.safetensors"


@dataclass
class Result:
    label: str
    prompts: int
    loads: int
    seconds: float
    per_worker: dict[str, int]

    @property
    def loads_per_100(self) -> float:
        return 100.0 * self.loads / self.prompts

    @property
    def throughput(self) -> float:
        return self.prompts / self.seconds


def write_checkpoints(folder: Path) -> None:
    from engine.models.save import save_single_file
    from engine.models.tiny import build_tiny

    folder.mkdir(parents=True, exist_ok=True)
    for seed, name in enumerate((*CHECKPOINTS, WARM_UP)):
        if (folder / name).exists():
            continue
        tiny = build_tiny("sd1", seed=seed)
        save_single_file(
            folder / name, tiny.unet, tiny.vae, tiny.text_encoders, tiny.family, None, tiny.prediction_type
        )


def workload(count: int, seed: int = 7) -> list[str]:
    """Checkpoints in runs of 1-4 prompts, weighted 3:2:1."""
    rng = random.Random(seed)
    names: list[str] = []
    while len(names) < count:
        names += [rng.choices(CHECKPOINTS, weights=(3, 2, 1))[0]] * rng.randint(1, 4)
    return names[:count]


def prompt(ckpt: str, seed: int) -> dict[str, Any]:
    from tests.nodes.sd_fixtures import text_to_image

    graph = text_to_image(ckpt, seed=seed, steps=4, size=64)
    graph["9"] = {"class_type": "PreviewImage", "inputs": {"images": ["8", 0]}}
    return graph


def start_server(base: Path, port: int, workers: int, routing: str) -> subprocess.Popen[str]:
    paths = base / "extra_model_paths.yaml"
    paths.write_text(f"bench:\n  checkpoints: {base / 'checkpoints'}\n")
    args = [
        sys.executable,
        str(ROOT / "main.py"),
        *("--port", str(port), "--database", str(base / f"run-{routing}-{workers}.db")),
        *("--output-directory", str(base / "output"), "--temp-directory", str(base / "temp")),
        *("--extra-model-paths-config", str(paths), "--disable-all-custom-nodes", "--quiet"),
        *("--ray", "--ray-workers", str(workers), "--ray-routing", routing),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        args, cwd=base, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


async def wait_ready(url: str, workers: int, process: subprocess.Popen[str], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            assert process.poll() is None, f"server exited: {process.stdout.read() if process.stdout else ''}"
            try:
                async with session.get(url + "/system_stats") as response:
                    found = (await response.json())["workers"]
                    if len(found) == workers and all(w.get("alive") and "pid" in w for w in found):
                        return
            except (aiohttp.ClientError, KeyError):
                pass
            await asyncio.sleep(0.5)
    raise TimeoutError("workers did not come up")


async def warm_up(url: str, workers: int) -> None:
    async with aiohttp.ClientSession() as session:
        for index in range(workers):
            body = {"prompt": prompt(WARM_UP, index), "extra_data": {"worker": f"loom-worker-{index}"}}
            async with session.post(url + "/prompt", json=body) as response:
                assert response.status == 200, await response.text()
        while True:
            async with session.get(url + "/prompt") as response:
                if not (await response.json())["exec_info"]["queue_remaining"]:
                    return
            await asyncio.sleep(0.2)


async def measure(url: str, names: list[str], label: str) -> Result:
    loads, per_worker, done = 0, {}, set()
    cached: dict[str, set[str]] = {}
    worker_of: dict[str, str] = {}
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{url}/ws?clientId=bench") as ws:
        started = time.perf_counter()
        ids = []
        for seed, name in enumerate(names):
            body = {"prompt": prompt(name, seed), "client_id": "bench"}
            async with session.post(url + "/prompt", json=body) as response:
                ids.append((await response.json())["prompt_id"])
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            kind, data = event["type"], event["data"]
            prompt_id = data.get("prompt_id") if isinstance(data, dict) else None
            if kind == "loom_dispatch":
                worker_of[prompt_id] = data["worker"]
            elif kind == "execution_cached":
                cached[prompt_id] = set(data["nodes"])
            elif kind == "executing" and data["node"] == "4" and "4" not in cached.get(prompt_id, set()):
                loads += 1
                per_worker[worker_of[prompt_id]] = per_worker.get(worker_of[prompt_id], 0) + 1
            elif kind in ("execution_success", "execution_error", "execution_interrupted"):
                assert kind == "execution_success", data
                done.add(prompt_id)
                if len(done) == len(ids):
                    break
        seconds = time.perf_counter() - started
    return Result(label, len(names), loads, seconds, per_worker)


async def run_one(base: Path, port: int, workers: int, routing: str, names: list[str]) -> Result:
    process = start_server(base, port, workers, routing)
    try:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(url, workers, process)
        await warm_up(url, workers)
        return await measure(url, names, f"{routing}, {workers} worker{'s' * (workers > 1)}")
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def free_port(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--port", type=int, default=18720)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="loom-ray-bench-"))
    write_checkpoints(base / "checkpoints")
    names = workload(args.prompts)
    results = []
    for workers, routing in ((2, "affinity"), (2, "round-robin"), (1, "affinity")):
        results.append(asyncio.run(run_one(base, free_port(args.port), workers, routing, names)))
    print(
        f"{'run':<26} {'prompts':>7} {'loads':>6} {'loads/100':>9} {'seconds':>8} {'prompts/s':>9}"
        "  loads by worker"
    )
    for r in results:
        print(
            f"{r.label:<26} {r.prompts:>7} {r.loads:>6} {r.loads_per_100:>9.1f} {r.seconds:>8.1f}"
            f" {r.throughput:>9.2f}  {r.per_worker}"
        )
    affinity, round_robin, single = results
    print(
        f"summary: round-robin loads {round_robin.loads_per_100 / max(affinity.loads_per_100, 1e-9):.2f}x"
        f" as many models per 100 prompts as affinity routing ({round_robin.loads_per_100:.0f} vs"
        f" {affinity.loads_per_100:.0f}); 2 workers give {affinity.throughput / single.throughput:.2f}x the"
        f" throughput of 1 ({affinity.throughput:.2f} vs {single.throughput:.2f} prompts/s)"
    )


if __name__ == "__main__":
    main()
