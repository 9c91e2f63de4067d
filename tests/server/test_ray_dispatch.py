"""The scale-out dispatcher against scripted device workers (no Ray, no processes): spreading,
files, the one retry after a worker death, and the failure after the second. The same paths run
against real actors in test_ray_cluster.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from engine.executor import Executor
from engine.folders import Folders
from engine.queue import PromptStore
from engine.registry import NodeRegistry
from engine.scaleout.interface import Job, WorkerEvent, WorkerGone
from engine.server.hub import Hub
from engine.server.pool import PoolWorker
from tests.server.conftest import Server, connect


class ScriptedWorker:
    """A DeviceWorker that 'runs' a prompt by emitting the executor's events and one output file,
    or dies (raises WorkerGone) for the prompts in `dies_on`."""

    def __init__(self, name: str, dies_on: set[str] | None = None) -> None:
        self.name = name
        self.labels: frozenset[str] = frozenset()
        self.dies_on = dies_on or set()
        self.ran: list[str] = []
        self.starts = 0

    async def start(self) -> None:
        self.starts += 1

    async def run(self, job: Job) -> AsyncIterator[WorkerEvent]:
        pid = job.prompt_id
        self.ran.append(pid)
        yield "execution_start", {"prompt_id": pid, "timestamp": 0}, []
        yield "executing", {"node": "1", "display_node": "1", "prompt_id": pid}, []
        await asyncio.sleep(0.01)
        if pid in self.dies_on:
            raise WorkerGone(f"worker {self.name} died")
        image = {"filename": "out_00001_.png", "subfolder": "", "type": "output"}
        output = {"node": "1", "display_node": "1", "output": {"images": [image]}, "prompt_id": pid}
        yield "executed", output, [("output", "", "out_00001_.png", f"{pid} on {self.name}".encode())]
        yield "execution_success", {"prompt_id": pid, "timestamp": 0}, []
        yield "executing", {"node": None, "display_node": None, "prompt_id": pid}, []

    async def interrupt(self, prompt_id: str | None) -> bool:
        return False

    async def health(self) -> dict[str, Any]:
        return {"pid": 0}

    async def free(self, unload_models: bool) -> None:
        return None

    async def stop(self) -> None:
        return None


PROMPT = {"1": {"class_type": "Anything", "inputs": {"ckpt_name": "a.safetensors"}}}


async def run_pool(tmp_path: Path, workers: list[ScriptedWorker], prompt_ids: list[str]) -> PromptStore:
    folders = Folders.under(tmp_path)
    for path in (folders.output, folders.input, folders.temp):
        path.mkdir(parents=True)
    store = PromptStore(tmp_path / "loom.db")
    hub = Hub()
    hub.bind(asyncio.get_running_loop())
    pool = PoolWorker(store, Executor(NodeRegistry()), hub, "none", list(workers), folders)
    for prompt_id in prompt_ids:
        store.add(prompt_id, PROMPT, {}, ["1"])
    task = asyncio.create_task(pool.run())
    try:
        async with asyncio.timeout(20):
            while store.remaining():
                await asyncio.sleep(0.01)
    finally:
        await pool.stop(grace=1.0)
        task.cancel()
    return store


def test_prompts_spread_and_every_output_file_arrives(tmp_path: Path) -> None:
    a, b = ScriptedWorker("a"), ScriptedWorker("b")
    store = asyncio.run(run_pool(tmp_path, [a, b], [f"p{i}" for i in range(6)]))
    names = set()
    for i in range(6):
        entry = store.history_entry(f"p{i}")
        assert entry is not None and entry["status"]["status_str"] == "success"
        names.add(entry["outputs"]["1"]["images"][0]["filename"])
    assert a.ran and b.ran and sorted(a.ran + b.ran) == [f"p{i}" for i in range(6)]
    assert len(names) == 6  # the same name from two workers was renamed, never overwritten
    assert len(list((tmp_path / "output").glob("out_*.png"))) == 6


def test_a_worker_death_gives_the_prompt_one_more_run_elsewhere(tmp_path: Path) -> None:
    a, b = ScriptedWorker("a", dies_on={"x"}), ScriptedWorker("b")
    store = asyncio.run(run_pool(tmp_path, [a, b], ["x"]))
    entry = store.history_entry("x")
    assert entry is not None and entry["status"]["status_str"] == "success"
    assert (a.ran, b.ran) == (["x"], ["x"])
    assert a.starts == 2  # brought up again after it died


def test_a_second_death_fails_the_prompt_and_it_never_runs_a_third_time(tmp_path: Path) -> None:
    a, b = ScriptedWorker("a", dies_on={"x"}), ScriptedWorker("b", dies_on={"x"})
    store = asyncio.run(run_pool(tmp_path, [a, b], ["x", "y"]))
    entry = store.history_entry("x")
    assert entry is not None and entry["status"]["status_str"] == "error"
    error = dict(entry["status"]["messages"])["execution_error"]
    assert error["exception_type"] == "WorkerDied" and "2 attempts" in error["exception_message"]
    assert a.ran.count("x") + b.ran.count("x") == 2
    assert store.history_entry("y")["status"]["status_str"] == "success"  # type: ignore[index]


async def test_system_stats_lists_the_local_worker(server: Server) -> None:
    async with connect(server) as client:
        stats = await client.get("/system_stats")
    assert [(w["name"], w["backend"], w["current_prompt"]) for w in stats["workers"]] == [
        ("local", "local", None)
    ]
    assert stats["workers"][0]["device"]["type"] in ("cpu", "cuda", "mps")
