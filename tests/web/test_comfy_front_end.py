"""ComfyUI's official front end (comfyui-frontend-package) served by Loom with `--front-end comfy`,
driven as a user would: it boots cleanly, runs the classic SD1.5 graph on Loom's shipped model,
lists the finished job, and keeps a saved workflow and a changed setting across a reload."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Response

from tests.web.conftest import ARTIFACTS, _start_server

pytest.importorskip("comfyui_frontend_package", reason="pinned in requirements.txt")

FIXTURE = Path(__file__).parents[1] / "engine" / "fixtures" / "default_t2i_v1.json"
SAVED = (
    "() => app.extensionManager.workflow.persistedWorkflows.some(w => w.path === 'workflows/loom-saved.json')"
)
READY = "() => window.app && window.app.graph && window.app.extensionManager?.setting"
# What ComfyUI itself answers 404 for on a fresh install (a user's optional files, folders not yet
# created), which the front end expects. Requests to other hosts (the release check on
# api.comfy.org, model links on huggingface.co) need the network. Anything else failing is a bug.
EXPECTED_404 = (
    "/user.css",
    "/api/userdata/user.css",
    "/api/userdata/comfy.templates.json",
    "/api/userdata/workflows%2F.index.json",
    "/api/userdata?dir=workflows&",
    "/api/userdata?dir=subgraphs&",
)


@pytest.fixture(scope="module")
def comfy_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    started = _start_server(tmp_path_factory.mktemp("comfy-front-end"), "--front-end", "comfy")
    url = next(started)
    # The first-run template browser would cover the canvas; a returning user has seen it.
    _post(url, "/api/settings", {"Comfy.TutorialCompleted": True})
    yield url
    next(started, None)


def _post(url: str, path: str, body: Any) -> None:
    request = urllib.request.Request(
        url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200


class Watched:
    """A page with every console error, page error and failed request recorded."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.url = ""
        self.answered: set[int] = set()
        self.console: list[str] = []
        self.failed: list[str] = []
        page.on("console", lambda m: self.console.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda error: self.console.append(f"page error: {error}"))
        page.on("response", self._response)
        page.on("requestfailed", self._request_failed)

    def _response(self, response: Response) -> None:
        self.answered.add(id(response.request))
        path = response.url.split("://", 1)[1].split("/", 1)[1]
        if response.status >= 400 and not (response.status == 404 and _expected("/" + path)):
            self.failed.append(f"{response.status} {response.request.method} {response.url}")

    def _request_failed(self, request: Any) -> None:
        if id(request) in self.answered:
            # Answered (a failing status is checked above); chromium then reports a body the page
            # never read, such as an empty 200 to a settings POST, as aborted.
            return
        if not request.url.startswith(self.url):
            return  # elsewhere on the internet (release check, model links): network-only
        if request.failure == "net::ERR_ABORTED":
            # Cancelled by the page itself (a reload leaving a large asset half-read, an aborted fetch);
            # a server that fails or drops the connection shows as a status or another net:: error.
            return
        self.failed.append(f"failed {request.method} {request.url}: {request.failure}")

    def open(self, url: str) -> None:
        self.url = url
        self.page.goto(url)
        self.page.wait_for_function(READY, timeout=60000)

    def reload(self) -> None:
        self.page.reload()
        self.page.wait_for_function(READY, timeout=60000)

    def unexplained_errors(self) -> list[str]:
        """Console errors other than the browser's own line for each expected failed load."""
        return [text for text in self.console if not text.startswith("Failed to load resource")]

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=ARTIFACTS / f"comfy-{name}.png")


def _expected(path: str) -> bool:
    return any(path == known or (known.endswith("&") and path.startswith(known)) for known in EXPECTED_404)


@pytest.fixture
def watched(browser: Browser) -> Iterator[Watched]:
    context = browser.new_context(viewport={"width": 1400, "height": 850})
    yield Watched(context.new_page())
    context.close()


def classic_graph() -> dict[str, Any]:
    """ComfyUI's classic SD1.5 default graph, on Loom's shipped model at its 64×64."""
    workflow = json.loads(FIXTURE.read_text())
    for node in workflow["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = ["loom_default.safetensors"]
        elif node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
        elif node["type"] == "KSampler":
            node["widgets_values"][:2] = [1, "fixed"]
    return workflow


def test_boots_runs_the_classic_graph_and_lists_the_finished_job(watched: Watched, comfy_url: str) -> None:
    page = watched.page
    watched.open(comfy_url)
    page.evaluate("(workflow) => window.app.loadGraphData(workflow)", classic_graph())
    page.wait_for_function("() => window.app.graph._nodes.length === 7")
    with page.expect_response(
        lambda r: "/view?" in r.url and "type=output" in r.url, timeout=180000
    ) as shown:
        page.get_by_role("button", name="Run").first.click()
    assert shown.value.status == 200 and shown.value.headers["content-type"] == "image/png"
    filename = shown.value.url.split("filename=", 1)[1].split("&", 1)[0]
    watched.shot("ran")
    page.get_by_text("active").first.click()  # the queue button: "0 active" once the job is done
    page.get_by_text(filename).first.wait_for(timeout=15000)
    watched.shot("queue")
    assert watched.failed == [], watched.failed
    assert watched.unexplained_errors() == [], watched.unexplained_errors()


def test_saved_workflow_and_changed_setting_survive_a_reload(watched: Watched, comfy_url: str) -> None:
    page = watched.page
    watched.open(comfy_url)
    page.evaluate("() => { app.extensionManager.setting.set('Comfy.TextareaWidget.FontSize', 13); }")
    page.evaluate("() => { app.extensionManager.command.execute('Comfy.SaveWorkflow'); }")
    page.get_by_role("dialog").locator("input").fill("loom-saved")
    with page.expect_request(lambda r: r.method == "POST" and "loom-saved.json" in r.url):
        page.keyboard.press("Enter")
    page.wait_for_function(SAVED)
    watched.reload()
    assert page.evaluate("() => app.extensionManager.setting.get('Comfy.TextareaWidget.FontSize')") == 13
    page.wait_for_function(
        SAVED,
        timeout=15000,
    )
    page.evaluate("() => { app.extensionManager.command.execute('Workspace.ToggleSidebarTab.workflows'); }")
    page.get_by_text("loom-saved").first.wait_for(timeout=15000)
    watched.shot("workflows")
    assert watched.failed == [], watched.failed
    assert watched.unexplained_errors() == [], watched.unexplained_errors()
