"""Browser tests: the real server (with the test nodes) in a subprocess, driven by Debian's chromium.

Screenshots of each step go to `artifacts/web/`. A missing chromium or an unbuilt canvas fails the
tests loudly: `make test` installs and builds both first.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "web"
CHROMIUM = Path(os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(base: Path, *flags: str) -> Iterator[str]:
    if not (ROOT / "web" / "dist" / "index.html").is_file():
        pytest.fail("web/dist is not built: run `make web` (make test does it)")
    port = _free_port()
    folders = [f"--{name}-directory={base / name}" for name in ("output", "input", "temp")]
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.server.launcher", "--port", str(port), *folders, *flags],
        cwd=base,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    output = ""  # the console logs start-up (custom node packs' import times) before the address
    line = process.stdout.readline()
    while line and "listening" not in line:
        output += line
        line = process.stdout.readline()
    if "listening" not in line:
        process.kill()
        pytest.fail(f"server did not start: {output}{process.stdout.read()}")
    # Read the console on, so a chatty server never blocks on a full pipe.
    threading.Thread(target=process.stdout.read, daemon=True).start()
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(30)  # a server that ran torch takes seconds to exit on a loaded machine


@pytest.fixture(scope="session")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with no model files: the canvas opens its model-free graph, which runs instantly."""
    yield from _start_server(tmp_path_factory.mktemp("web-server"), "--without-models")


@pytest.fixture(scope="session")
def shipped_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server as `make run` starts it, with Loom's shipped default model."""
    yield from _start_server(tmp_path_factory.mktemp("web-shipped"))


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: run `make chromium` (apt-get install chromium)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class Canvas:
    """A page showing Loom's canvas, with helpers to reach into `window.loom` and take screenshots."""

    def __init__(self, page: Page, url: str, name: str) -> None:
        self.page, self.url, self.name = page, url, name
        self.errors: list[str] = []
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(message.text)

    def open(self) -> None:
        self.page.goto(self.url)
        self.page.wait_for_selector("body[data-ready=true]", timeout=15000)

    def js(self, expression: str, arg: Any = None) -> Any:
        return self.page.evaluate(expression, arg)

    def shot(self, step: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{self.name}-{step}.png"
        self.page.wait_for_timeout(150)  # let the canvas draw the last change
        self.page.screenshot(path=path)
        return path

    def node_types(self) -> list[str]:
        return list(self.js("loom.graph.nodes.map(n => n.type)"))

    def wait_for_count(self, node_type: str, count: int) -> None:
        """Wait (instead of sleeping a fixed time) until the graph holds `count` nodes of a type."""
        script = "([type, count]) => loom.graph.nodes.filter(n => n.type === type).length === count"
        self.page.wait_for_function(script, arg=[node_type, count], timeout=10000)

    def open_search(self, x: int, y: int) -> None:
        """Double-click the canvas at (x, y) until the search box opens: litegraph tells a double
        click by the time between the clicks, which a renderer starved of CPU can stretch."""
        for _ in range(5):
            self.page.dblclick("#graph", position={"x": x, "y": y})
            try:
                self.page.wait_for_selector(".search input", timeout=3000)
                return
            except PlaywrightTimeoutError:
                continue
        raise AssertionError(f"double-clicking the canvas at {x},{y} did not open the search box")

    def add_from_search(self, query: str, x: int, y: int) -> None:
        """Search from a double click at (x, y) and add the first match there."""
        self.open_search(x, y)
        self.page.keyboard.type(query)
        self.page.wait_for_selector(".search li")
        self.page.keyboard.press("Enter")

    def wait_until_saved(self, node_type: str, count: int = 1) -> None:
        """Wait until the change history has recorded (and localStorage holds) `count` nodes of a type."""
        script = """([type, count]) => {
            const saved = JSON.parse(localStorage.getItem('loom.workflow') || '{"nodes": []}');
            return saved.nodes.filter(n => n.type === type).length === count; }"""
        self.page.wait_for_function(script, arg=[node_type, count], timeout=10000)

    def to_screen(self, x: float, y: float) -> tuple[float, float]:
        """Graph coordinates to page coordinates."""
        script = """([x, y]) => {
            const { offset, scale } = loom.canvas.ds;
            const rect = loom.canvas.canvas.getBoundingClientRect();
            return [rect.left + (x + offset[0]) * scale, rect.top + (y + offset[1]) * scale]; }"""
        return tuple(self.js(script, [x, y]))

    def slot_position(self, node_id: int, slot: int, output: bool) -> tuple[float, float]:
        method = "getOutputPos" if output else "getInputPos"
        x, y = self.js(f"([id, slot]) => [...loom.graph.getNodeById(id).{method}(slot)]", [node_id, slot])
        return self.to_screen(x, y)


def _open_canvas(browser: Browser, url: str, request: pytest.FixtureRequest) -> Iterator[Canvas]:
    context = browser.new_context(viewport={"width": 1400, "height": 850}, accept_downloads=True)
    page = context.new_page()
    view = Canvas(page, url, request.node.name.removeprefix("test_"))
    view.open()
    yield view
    context.close()
    assert not view.errors, f"console errors: {view.errors}"


@pytest.fixture
def canvas(browser: Browser, server_url: str, request: pytest.FixtureRequest) -> Iterator[Canvas]:
    yield from _open_canvas(browser, server_url, request)


@pytest.fixture
def shipped_canvas(
    browser: Browser, shipped_server_url: str, request: pytest.FixtureRequest
) -> Iterator[Canvas]:
    yield from _open_canvas(browser, shipped_server_url, request)
