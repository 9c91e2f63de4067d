"""Real servers in subprocesses on free loopback ports, and a small client for them.

Async tests run under asyncio.run (no plugin needed)."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
Event = tuple[str, Any]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
        asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), 60))
        return True
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    base: Path
    port: int
    process: subprocess.Popen[str]
    token: str | None = None
    ready_line: str = ""
    # The console before "listening", and after it (read by a thread, so a chatty server never
    # blocks on a full pipe).
    startup: str = ""
    console: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)  # a server that ran torch exits slowly on a loaded machine


def start_server(base: Path, *flags: str, port: int | None = None) -> Server:
    """Start tests/server/launcher.py in `base` (its folders and database live there)."""
    port = port or free_port()
    args = [
        *("--port", str(port), "--output-directory", str(base / "output")),
        *("--input-directory", str(base / "input"), "--temp-directory", str(base / "temp")),
        *flags,
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.server.launcher", *args],
        cwd=base,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = ""  # start-up may log first (a custom node pack that failed to load, say)
    line = process.stdout.readline()
    while line and "listening" not in line:
        output += line
        line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        raise RuntimeError(f"server did not start: {output}{process.stdout.read()}")
    token = flags[flags.index("--token") + 1] if "--token" in flags else None
    server = Server(base, port, process, token, line, output)
    threading.Thread(target=_drain, args=(process, server.console), daemon=True).start()
    return server


def _drain(process: subprocess.Popen[str], lines: list[str]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("server"))
    yield running
    running.stop()


def graph(color: int = 0, prefix: str = "t", output: str = "SaveImage") -> dict[str, Any]:
    """The 2-node graph of the ComfyUI-client flow: an 8×8 image, saved or previewed."""
    image = {"width": 8, "height": 8, "batch_size": 1, "color": color}
    save: dict[str, Any] = {"images": ["1", 0]}
    if output == "SaveImage":
        save["filename_prefix"] = prefix
    return {"1": {"class_type": "EmptyImage", "inputs": image}, "2": {"class_type": output, "inputs": save}}


def waiting(path: Path, value: float = 1.0) -> dict[str, Any]:
    """A prompt that runs until `path` exists."""
    return {
        "1": {"class_type": "WaitForFile", "inputs": {"path": str(path), "value": value}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }


class Client:
    def __init__(self, server: Server, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def post(self, path: str, body: Any = None, status: int = 200, **kw: Any) -> Any:
        async with self.session.post(self.server.url + path, json=body, **kw) as response:
            text = await response.text()
            assert response.status == status, f"{path}: {response.status} {text[:500]}"
            return json.loads(text) if text and response.content_type == "application/json" else text

    async def get(self, path: str, status: int = 200, **kw: Any) -> Any:
        async with self.session.get(self.server.url + path, **kw) as response:
            text = await response.text()
            assert response.status == status, f"{path}: {response.status} {text[:500]}"
            return json.loads(text) if response.content_type == "application/json" else text

    async def queue(self, prompt: dict[str, Any], client_id: str | None = None, **body: Any) -> str:
        body = {"prompt": prompt, **body}
        if client_id:
            body["client_id"] = client_id
        return str((await self.post("/prompt", body))["prompt_id"])

    @asynccontextmanager
    async def websocket(self, client_id: str) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
        async with self.session.ws_connect(f"{self.server.url}/ws?clientId={client_id}") as ws:
            yield ws

    async def wait_queue_empty(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while (await self.get("/prompt"))["exec_info"]["queue_remaining"]:
            assert time.monotonic() < deadline, "queue did not drain"
            await asyncio.sleep(0.02)

    async def wait_running(self, prompt_id: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while [i[1] for i in (await self.get("/queue"))["queue_running"]] != [prompt_id]:
            assert time.monotonic() < deadline, f"{prompt_id} did not start"
            await asyncio.sleep(0.02)


async def events_until_done(
    ws: aiohttp.ClientWebSocketResponse, prompt_id: str, timeout: float = 20
) -> list[Event]:
    """Every message up to and including `executing` with node None for this prompt."""
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        async for message in ws:
            if message.type == aiohttp.WSMsgType.BINARY:
                events.append(("binary", message.data))
                continue
            event = json.loads(message.data)
            events.append((event["type"], event["data"]))
            data = event["data"]
            if event["type"] == "executing" and data["node"] is None and data["prompt_id"] == prompt_id:
                return events
    raise AssertionError(f"websocket closed before {prompt_id} finished: {events}")


@asynccontextmanager
async def connect(server: Server, **kw: Any) -> AsyncIterator[Client]:
    async with aiohttp.ClientSession(**kw) as session:
        yield Client(server, session)
