"""What the page tells a user around a run: the queue panel and lightbox describe each prompt, an
unreachable server is named, and the shipped model's limits are stated where a user looks."""

from __future__ import annotations

import re

from playwright.sync_api import Route

from tests.web.conftest import Canvas

SET_SEED = "loom.graph.nodes.find(n => n.type === 'KSampler').widgets.find(w => w.name === 'seed').value = 7"


def test_queue_panel_and_lightbox_describe_each_prompt(shipped_canvas: Canvas) -> None:
    canvas = shipped_canvas
    canvas.js(SET_SEED)
    save = canvas.js("String(loom.graph.nodes.find(n => n.type === 'SaveImage').id)")
    canvas.page.click("#queue-panel-button")
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function(f"loom.feedback.images.get('{save}')?.[0]?.complete", timeout=90000)
    entry = canvas.page.locator("#gallery .history-entry").first
    entry.locator("img").wait_for()
    canvas.shot("panel")
    head = entry.locator(".head").inner_text()
    assert re.fullmatch(r"#\d+ · success · \d\d:\d\d:\d\d( [AP]M)? · \d+\.\d s", head), head
    assert entry.locator(".summary").inner_text() == "“a large red circle on the left” · seed 7 · 64×64"
    entry.locator("img").first.click()
    details = canvas.page.locator(".lightbox dl").inner_text()
    canvas.shot("lightbox")
    filename = canvas.js(f"new URL(loom.feedback.images.get('{save}')[0].src).searchParams.get('filename')")
    for fact in ("a large red circle on the left", "7", "64×64", filename):
        assert fact in details, (fact, details)


def test_server_not_reachable_is_said_with_its_url(canvas: Canvas) -> None:
    canvas.page.route("**/prompt", lambda route: route.abort())
    canvas.page.click("#queue-button")
    toast = canvas.page.locator(".toast.error").inner_text()
    canvas.shot("unreachable")
    assert f"not reachable at {canvas.url}" in toast and "Failed to fetch" not in toast
    canvas.errors.remove("Failed to load resource: net::ERR_FAILED")


def test_shipped_model_limits_are_in_the_default_graph_and_the_loader_description(
    shipped_canvas: Canvas,
) -> None:
    canvas = shipped_canvas
    note = canvas.js("loom.graph.nodes.find(n => n.type === 'Note').widgets[0].value")
    assert "64×64" in note and "<circle|square|triangle>" in note and "512×512" in note
    loader = "loom.graph.nodes.find(n => n.type === 'CheckpointLoaderSimple')"
    title = canvas.js(f"(n => [n.pos[0] + 40, n.pos[1] - 15])({loader})")
    canvas.page.mouse.move(*canvas.to_screen(*title))
    canvas.page.wait_for_selector(".tooltip:not([hidden])")
    canvas.shot("loader-tooltip")
    tooltip = canvas.page.locator(".tooltip").inner_text()
    assert "loom_default.safetensors" in tooltip and "64×64" in tooltip


def test_queueing_the_shipped_model_at_512_says_it_draws_64(shipped_canvas: Canvas) -> None:
    canvas = shipped_canvas
    canvas.js(
        """(n => { n.widgets.find(w => w.name === 'width').value = 512;
                   n.widgets.find(w => w.name === 'height').value = 512; })
           (loom.graph.nodes.find(n => n.type === 'EmptyLatentImage'))"""
    )

    def accept(route: Route) -> None:  # nothing is run: only what the page says before it sends
        route.fulfill(json={"prompt_id": "not-run", "number": 1, "node_errors": {}})

    canvas.page.route("**/prompt", accept)
    canvas.page.click("#queue-button")
    hint = canvas.page.locator(".toast", has_text="loom_default").inner_text()
    assert "64×64" in hint and "512×512" in hint
