"""Scale-out on a local Ray instance: two CPU workers behind one server, one queue, one history.

The test process starts the Ray instance (one per module, so its processes end with the module) and
the server joins it with --ray-address, as it would join a cluster; the server's restart then
re-attaches to the same actors."""

from __future__ import annotations

import asyncio
import io
import json
import struct
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from PIL import Image

from tests.server.conftest import Client, Server, connect, events_until_done, graph, start_server, waiting
from tests.server.server_nodes import TINY_PNG

ray = pytest.importorskip("ray")

WORKERS = 2


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    ray.init(num_cpus=WORKERS + 1, include_dashboard=False, namespace="loom-tests", configure_logging=False)
    try:
        yield str(ray.get_runtime_context().gcs_address)
    finally:
        ray.shutdown()


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ray")


def start(base: Path, address: str) -> Server:
    """A server on the module's Ray instance, returned once its workers answer (actors import torch
    and build their registry: seconds, or a minute on a loaded machine; outside any test's timeout)."""
    server = start_server(
        base, "--ray-address", address, "--ray-workers", str(WORKERS), "--worker-labels", "1=big"
    )
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with urllib.request.urlopen(server.url + "/system_stats", timeout=10) as response:
            found = json.load(response)["workers"]
        if all(w["alive"] and "pid" in w for w in found):
            return server
        time.sleep(0.2)
    server.stop()
    raise TimeoutError(f"Ray workers did not come up: {found}")


@pytest.fixture(scope="module")
def server(base: Path, ray_address: str) -> Iterator[Server]:
    running = start(base, ray_address)
    yield running
    running.stop()


async def workers(client: Client, alive: bool = True, timeout: float = 60) -> list[dict[str, Any]]:
    """/system_stats's workers, once every one is up (or the first answer, with alive=False)."""
    deadline = time.monotonic() + timeout
    while True:
        found = (await client.get("/system_stats"))["workers"]
        if not alive or all(w["alive"] and "pid" in w for w in found):
            return list(found)
        assert time.monotonic() < deadline, f"workers did not come up: {found}"
        await asyncio.sleep(0.2)


async def history(client: Client, prompt_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while not (entry := await client.get(f"/history/{prompt_id}")):
        assert time.monotonic() < deadline, f"{prompt_id} did not finish"
        await asyncio.sleep(0.05)
    return dict(entry[prompt_id])


async def running_on(client: Client, prompt_ids: set[str], timeout: float = 60) -> dict[str, str]:
    """prompt_id → worker name, once every one of them runs."""
    deadline = time.monotonic() + timeout
    while True:
        placed = {w["current_prompt"]: w["name"] for w in await workers(client, alive=False)}
        if prompt_ids <= placed.keys():
            return {p: placed[p] for p in prompt_ids}
        assert time.monotonic() < deadline, f"not all of {prompt_ids} started: {placed}"
        await asyncio.sleep(0.05)


def run_log(log: Path, die: str = "never", wait_for: Path | None = None) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "1": {"class_type": "RunLog", "inputs": {"log": str(log), "die": die, "value": 1.0}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }
    if wait_for is not None:
        prompt["3"] = {"class_type": "WaitForFile", "inputs": {"path": str(wait_for), "value": ["1", 0]}}
        prompt["2"]["inputs"]["value"] = ["3", 0]
    return prompt


def pids(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def test_the_client_flow_is_unchanged(server: Server) -> None:
    """Upload, POST /prompt, websocket events in order, /history, /view: as with one local worker."""
    source = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(source, "PNG")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "red.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "flow"}},
    }
    async with connect(server) as client, client.websocket("flow") as ws:
        await workers(client)
        form = aiohttp.FormData()
        form.add_field("image", source.getvalue(), filename="red.png", content_type="image/png")
        await client.post("/upload/image", data=form)
        prompt_id = await client.queue(prompt, "flow")
        events = await events_until_done(ws, prompt_id, timeout=60)
        entry = await history(client, prompt_id)
        image = entry["outputs"]["2"]["images"][0]
        async with client.session.get(f"{server.url}/view", params=image) as response:
            assert response.status == 200
            png = await response.read()
    kinds = [kind for kind, data in events if isinstance(data, dict) and data.get("prompt_id") == prompt_id]
    order = [
        "loom_dispatch",
        "execution_start",
        "execution_cached",
        "executing",
        "executed",
        "execution_success",
    ]
    assert [k for k in dict.fromkeys(kinds) if k in order] == order
    assert entry["status"]["status_str"] == "success"
    assert Image.open(io.BytesIO(png)).getpixel((0, 0))[:3] == (200, 30, 30)
    assert (server.base / "output" / image["filename"]).is_file()


async def test_files_a_node_writes_without_naming_them_reach_the_server(server: Server) -> None:
    """SaveLatent (like the model save nodes) writes into a subfolder and names no image: the file
    still comes back to the server's output folder."""
    prompt = {
        "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "2": {"class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "kept/ray"}},
    }
    async with connect(server) as client:
        await workers(client)
        entry = await history(client, await client.queue(prompt, "kept"))
    assert entry["status"]["status_str"] == "success"
    assert [p.name for p in (server.base / "output" / "kept").iterdir()] == ["ray_00001_.latent"]


async def test_previews_and_progress_reach_the_client(server: Server) -> None:
    prompt = {
        "1": {"class_type": "SendPreview", "inputs": {"value": 2.0}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }
    async with connect(server) as client, client.websocket("previews") as ws:
        await workers(client)
        prompt_id = await client.queue(prompt, "previews")
        events = await events_until_done(ws, prompt_id, timeout=60)
    frames = [data for kind, data in events if kind == "binary"]
    assert frames and frames[0][:8] == struct.pack(">II", 1, 2) and frames[0][8:] == TINY_PNG
    assert "progress_state" in [kind for kind, _ in events]


async def test_prompts_spread_over_workers_and_interrupt_stops_the_right_one(server: Server) -> None:
    first, second = server.base / "spread-1", server.base / "spread-2"
    async with connect(server) as client:
        await workers(client)
        a = await client.queue(waiting(first))
        b = await client.queue(waiting(second))
        placed = await running_on(client, {a, b})
        assert len(set(placed.values())) == WORKERS
        await client.post("/interrupt", {"prompt_id": b})
        interrupted = await history(client, b)
        assert [w for w in await workers(client, alive=False) if w["current_prompt"] == a]
        first.touch()
        done = await history(client, a)
    assert interrupted["status"]["status_str"] == "error"
    assert "execution_interrupted" in [m[0] for m in interrupted["status"]["messages"]]
    assert done["status"]["status_str"] == "success"


async def test_a_worker_that_dies_mid_prompt_has_it_run_once_more_elsewhere(server: Server) -> None:
    log = server.base / "die-first.log"
    async with connect(server) as client, client.websocket("dies") as ws:
        await workers(client)
        prompt_id = await client.queue(run_log(log, "first"), "dies")
        events = await events_until_done(ws, prompt_id, timeout=60)
        entry = await history(client, prompt_id)
    dispatched = [d["worker"] for kind, d in events if kind == "loom_dispatch"]
    assert entry["status"]["status_str"] == "success"
    assert len(pids(log)) == 2 and len(set(pids(log))) == 2
    assert len(dispatched) == 2 and dispatched[0] != dispatched[1]
    assert [d["prompt_id"] for kind, d in events if kind == "loom_retry"] == [prompt_id]


async def test_a_prompt_that_kills_every_worker_runs_twice_then_fails(server: Server) -> None:
    log = server.base / "die-always.log"
    async with connect(server) as client:
        await workers(client)
        prompt_id = await client.queue(run_log(log, "always"))
        entry = await history(client, prompt_id)
        after = await client.queue(graph(color=9, prefix="after"))
        assert (await history(client, after))["status"]["status_str"] == "success"
    error = dict(entry["status"]["messages"])["execution_error"]
    assert entry["status"]["status_str"] == "error"
    assert error["exception_type"] == "WorkerDied"
    assert "died on each of its 2 attempts" in error["exception_message"]
    assert len(pids(log)) == 2


async def test_killing_an_actor_mid_prompt_loses_nothing(server: Server) -> None:
    log, release = server.base / "killed.log", server.base / "killed-release"
    async with connect(server) as client:
        await workers(client)
        prompt_id = await client.queue(run_log(log, wait_for=release))
        victim = (await running_on(client, {prompt_id}))[prompt_id]
        while not pids(log):
            await asyncio.sleep(0.05)
        ray.kill(ray.get_actor(victim, namespace="loom"), no_restart=False)
        while len(pids(log)) < 2:
            await asyncio.sleep(0.05)
        release.touch()
        entry = await history(client, prompt_id)
        survivors = await workers(client)
    assert entry["status"]["status_str"] == "success"
    assert len(pids(log)) == 2
    assert {w["name"]: w["deaths"] for w in survivors}[victim] >= 1


async def test_labels_pin_prompts(server: Server) -> None:
    async with connect(server) as client, client.websocket("labels") as ws:
        await workers(client)
        pinned = await client.queue(graph(color=5, prefix="big"), "labels", extra_data={"worker": "big"})
        events = await events_until_done(ws, pinned, timeout=60)
        nowhere = await client.queue(graph(color=6, prefix="none"), extra_data={"worker": "tpu"})
        refused = await history(client, nowhere)
    assert [d["worker"] for kind, d in events if kind == "loom_dispatch"] == ["loom-worker-1"]
    assert dict(refused["status"]["messages"])["execution_error"]["exception_type"] == "NoMatchingWorker"


async def test_a_restarted_server_reattaches_and_keeps_its_queue(
    server: Server, base: Path, ray_address: str
) -> None:
    release = base / "restart-release"
    async with connect(server) as client:
        before = {w["name"]: w["pid"] for w in await workers(client)}
        queued = [await client.queue(waiting(release, value=float(i))) for i in range(WORKERS + 1)]
        await running_on(client, set(queued[:WORKERS]))
    server.stop()
    again = start(base, ray_address)
    try:
        async with connect(again) as client:
            after = {w["name"]: w["pid"] for w in await workers(client)}
            release.touch()
            entries = [await history(client, prompt_id) for prompt_id in queued]
    finally:
        again.stop()
    assert after == before
    assert [e["status"]["status_str"] for e in entries] == ["success"] * len(queued)
