"""A prompt accepted is a prompt kept: kill -9 mid-run, restart, and everything is still there."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from engine.queue import PromptStore
from tests.server.conftest import connect, graph, start_server, waiting


async def test_kill_9_mid_run_keeps_queue_order_reruns_running_and_keeps_history(tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = start_server(tmp_path)
    try:
        async with connect(first) as client:
            finished = await client.queue(graph(color=5, prefix="before"))
            await client.wait_queue_empty()
            running = await client.queue(waiting(release), prompt_id="running")
            await client.wait_running(running)
            pending = [
                await client.queue(graph(color=20 + i, prefix=f"p{i}"), prompt_id=f"p{i}") for i in range(3)
            ]
            front = await client.queue(graph(color=30, prefix="front"), prompt_id="front", front=True)
    finally:
        first.stop(signal.SIGKILL)

    second = start_server(tmp_path, port=first.port)
    try:
        async with connect(second) as client:
            queue = await client.get("/queue")
            assert [i[1] for i in queue["queue_running"]] == [running]
            assert [i[1] for i in queue["queue_pending"]] == [front, *pending]
            assert finished in await client.get("/history")
            release.touch()
            await client.wait_queue_empty()
            history = await client.get("/history")
            assert list(history) == [finished, running, front, *pending]
            assert history[running]["status"]["status_str"] == "success"
    finally:
        second.stop()


def test_database_is_wal_with_numbered_migrations(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "q.db")
    store.add("x", {"1": {}}, {}, ["1"])
    assert store.schema_version() == 2
    store.close()
    with sqlite3.connect(tmp_path / "q.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT version FROM migrations").fetchall() == [(1,), (2,)]
    reopened = PromptStore(tmp_path / "q.db")
    assert reopened.schema_version() == 2 and [i.prompt_id for i in reopened.queue()[1]] == ["x"]
    reopened.close()


def test_running_prompt_is_pending_again_after_reopen(tmp_path: Path) -> None:
    store = PromptStore(tmp_path / "q.db")
    for prompt_id in ("a", "b"):
        store.add(prompt_id, {}, {}, [])
    claimed = store.claim_next()
    assert claimed is not None and claimed.prompt_id == "a"
    reopened = PromptStore(tmp_path / "q.db")
    running, pending = reopened.queue()
    assert running == [] and [i.prompt_id for i in pending] == ["a", "b"]
    store.close()
    reopened.close()


async def test_clean_stop_puts_the_running_prompt_back(tmp_path: Path) -> None:
    release = tmp_path / "release"
    first = start_server(tmp_path)
    try:
        async with connect(first) as client:
            running = await client.queue(waiting(release), prompt_id="interrupted-by-stop")
            await client.wait_running(running)
    finally:
        first.stop(signal.SIGTERM)
    second = start_server(tmp_path, port=first.port)
    try:
        async with connect(second) as client:
            assert [i[1] for i in (await client.get("/queue"))["queue_running"]] == [running]
            assert await client.get("/history") == {}
            release.touch()
            await client.wait_queue_empty()
            assert (await client.get(f"/history/{running}"))[running]["status"]["status_str"] == "success"
    finally:
        second.stop()
