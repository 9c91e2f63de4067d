"""A node that exits, crashes or hangs: the server survives what it can and never crash-loops."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import ROOT, Server, connect, events_until_done, graph, start_server


def fault(how: str, path: str = "") -> dict[str, Any]:
    return {
        "1": {"class_type": "Fault", "inputs": {"how": how, "path": path, "value": 1.0}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }


@pytest.mark.parametrize("how", ["sys_exit", "keyboard_interrupt"])
async def test_exit_and_ctrl_c_from_a_node_fail_the_prompt_not_the_server(server: Server, how: str) -> None:
    async with connect(server) as client, client.websocket(how) as ws:
        prompt_id = await client.queue(fault(how), how)
        events = await events_until_done(ws, prompt_id)
        after = await client.queue(graph(color=3, prefix=how))
        await client.wait_queue_empty()
        history = await client.get("/history")
    error = dict(events)["execution_error"]
    assert error["node_id"] == "1" and error["exception_type"] in ("SystemExit", "KeyboardInterrupt")
    assert history[prompt_id]["status"]["status_str"] == "error"
    assert history[after]["status"]["status_str"] == "success"
    assert server.process.poll() is None


def wait_exit(server: Server, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while server.process.poll() is None:
        assert time.monotonic() < deadline, "the server did not die"
        time.sleep(0.05)
    return server.process.returncode


def run_until_exit(base: Path, port: int) -> int:
    """Start the server and wait for it to die (it may die before it answers)."""
    args = ["--port", str(port), "--output-directory", str(base / "output")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    launched = [sys.executable, "-m", "tests.server.launcher", *args]
    return subprocess.run(launched, cwd=base, env=env, capture_output=True, timeout=60).returncode


@pytest.mark.parametrize("how", ["os_exit", "segfault"])
async def test_a_prompt_that_kills_the_process_fails_after_one_retry(tmp_path: Path, how: str) -> None:
    first = start_server(tmp_path)
    async with connect(first) as client:
        killer = await client.queue(fault(how), prompt_id="killer")
        assert wait_exit(first) != 0
    assert run_until_exit(tmp_path, first.port) != 0  # runs it again: it might have been bad luck
    last = start_server(tmp_path, port=first.port)
    try:
        async with connect(last) as client:
            after = await client.queue(graph(color=4, prefix="after"))
            await client.wait_queue_empty()
            history = await client.get("/history")
    finally:
        last.stop()
    error = history[killer]["status"]["messages"][-1][1]
    assert history[killer]["status"]["status_str"] == "error"
    assert error["exception_type"] == "ProcessDied" and error["node_id"] == "1"
    assert "#1 (Fault)" in error["exception_message"] and "not run again" in error["exception_message"]
    assert history[after]["status"]["status_str"] == "success"


async def test_interrupt_stops_a_node_that_never_checks_for_it(server: Server) -> None:
    async with connect(server) as client, client.websocket("spinner") as ws:
        prompt_id = await client.queue(fault("busy_loop"), "spinner")
        await client.wait_running(prompt_id)
        asked = time.monotonic()
        await client.post("/interrupt")
        events = await events_until_done(ws, prompt_id)
        took = time.monotonic() - asked
        after = await client.queue(graph(color=5, prefix="after-spin"))
        await client.wait_queue_empty()
        assert (await client.get(f"/history/{after}"))[after]["status"]["status_str"] == "success"
    assert "execution_interrupted" in dict(events) and took < 5


async def test_sigterm_ends_the_server_within_seconds_even_if_a_node_hangs(tmp_path: Path) -> None:
    first = start_server(tmp_path)
    async with connect(first) as client:
        hung = await client.queue(fault("sleep"), prompt_id="hung")
        await client.wait_running(hung)
    asked = time.monotonic()
    first.process.send_signal(signal.SIGTERM)
    wait_exit(first, timeout=15)
    assert time.monotonic() - asked < 8
    second = start_server(tmp_path, port=first.port)  # the hung prompt had its one retry...
    second.process.send_signal(signal.SIGTERM)
    wait_exit(second, timeout=15)
    third = start_server(tmp_path, port=first.port)  # ...so it is not run a third time
    try:
        async with connect(third) as client:
            entry = (await client.get("/history/hung"))["hung"]
    finally:
        third.stop()
    assert entry["status"]["messages"][-1][1]["exception_type"] == "ProcessDied"
