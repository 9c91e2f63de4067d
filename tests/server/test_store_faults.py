"""A database that cannot be written (a full disk) never wedges the worker: the result is retried
and reported, the queue keeps moving once there is room, and nothing runs twice because of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from engine.queue import PromptStore
from tests.server.conftest import Server, connect, graph, start_server, waiting
from tests.server.small_disk import fill, small_disk


def read_log(server: Server) -> str:
    """Everything the server has printed after "listening" (a thread of the fixture drains it)."""
    return "".join(server.console)


async def read_log_until(server: Server, text: str, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while text not in read_log(server):
        assert time.monotonic() < deadline, f"{text!r} not logged: {read_log(server)}"
        await asyncio.sleep(0.05)
    return read_log(server)


async def test_full_disk_while_recording_a_result_does_not_wedge_the_queue(tmp_path: Path) -> None:
    release = tmp_path / "release"
    with small_disk(tmp_path / "disk") as disk:
        server = start_server(tmp_path, "--database", str(disk / "loom.db"))
        try:
            async with connect(server) as client:
                big_result = {**waiting(release), "3": {"class_type": "BigText", "inputs": {"size": 300_000}}}
                first = await client.queue(big_result, prompt_id="first")
                await client.wait_running(first)
                pending = [
                    await client.queue(graph(color=i, prefix=f"p{i}"), prompt_id=f"p{i}") for i in range(3)
                ]
                ballast = fill(disk)
                release.touch()
                refused = await client.post("/prompt", {"prompt": graph(color=9)}, status=507)
                assert "full" in refused["error"] and "loom.db" in refused["error"]
                await read_log_until(server, "cannot record the result of prompt first")
                ballast.unlink()  # room again
                late = await client.queue(graph(color=10, prefix="late"), prompt_id="late")
                await client.wait_queue_empty(timeout=30)
                history = await client.get("/history")
                assert set(history) == {first, *pending, late}
                assert all(entry["status"]["status_str"] == "success" for entry in history.values())
        finally:
            server.stop()
        assert "recorded the result of prompt first after an earlier failure" in read_log(server)
        reopened = PromptStore(disk / "loom.db")  # a restart runs nothing again
        assert reopened.remaining() == 0 and reopened.crashed == []
        reopened.close()
    assert len(list((tmp_path / "output").glob("p0_*.png"))) == 1
