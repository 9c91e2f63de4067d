"""Editing the graph as a ComfyUI artist does: the Add Node menu, mute and bypass, the node menu,
search ranking and ComfyUI 0.4 files with sockets listed the old way."""

from __future__ import annotations

import json
from pathlib import Path

from tests.web.conftest import Canvas

DATA = Path(__file__).parent / "data"

# Graph coordinates to canvas backing-store pixels, after a full redraw; returns RGBA.
PIXEL = """([x, y]) => {
    loom.canvas.draw(true, true);
    const { offset, scale } = loom.canvas.ds, ratio = devicePixelRatio;
    const px = Math.round((x + offset[0]) * scale * ratio), py = Math.round((y + offset[1]) * scale * ratio);
    return [...loom.canvas.canvas.getContext('2d').getImageData(px, py, 1, 1).data]; }"""


def _menu_entries(canvas: Canvas) -> list[str]:
    return canvas.page.locator(".litecontextmenu").last.locator(".litemenu-entry").all_inner_texts()


def test_right_click_add_node_lists_nodes_by_category(canvas: Canvas) -> None:
    canvas.page.click("#graph", position={"x": 700, "y": 700}, button="right")
    canvas.page.locator(".litemenu-entry", has_text="Add Node").click()
    categories = _menu_entries(canvas)
    canvas.shot("categories")
    assert {"image", "latent", "loaders", "sampling", "utils"} <= set(categories)
    assert categories[-1] == "_for_testing", "testing nodes come last"
    canvas.page.locator(".litecontextmenu").last.locator(".litemenu-entry", has_text="image").first.click()
    titles = _menu_entries(canvas)
    invert = canvas.js("loom.info.ImageInvert.display_name")
    assert invert in titles and "upscaling" in titles
    before = canvas.node_types().count("ImageInvert")
    canvas.page.locator(".litecontextmenu").last.locator(".litemenu-entry", has_text=invert).click()
    canvas.shot("added")
    assert canvas.node_types().count("ImageInvert") == before + 1


def _body_pixel(canvas: Canvas, node_id: int) -> list[int]:
    x, y = canvas.js(
        f"(n => [n.pos[0] + n.size[0] / 2, n.pos[1] + n.size[1] - 3])(loom.graph.getNodeById({node_id}))"
    )
    return canvas.js(PIXEL, [x, y])


def test_muted_and_bypassed_nodes_look_different_and_queue_accordingly(canvas: Canvas) -> None:
    normal = _body_pixel(canvas, 2)
    canvas.js("loom.canvas.selectNode(loom.graph.getNodeById(2))")
    canvas.page.keyboard.press("Control+m")
    canvas.shot("muted")
    assert canvas.js("loom.graph.getNodeById(2).mode") == 2
    muted = _body_pixel(canvas, 2)
    assert max(abs(a - b) for a, b in zip(muted[:3], normal[:3], strict=True)) > 8, (normal, muted)
    prompt = canvas.js("loom.toPrompt()")
    assert "2" not in prompt and "images" not in prompt["3"]["inputs"], "a muted node is left out"

    canvas.page.keyboard.press("Control+m")
    canvas.page.keyboard.press("Control+b")
    canvas.shot("bypassed")
    assert canvas.js("loom.graph.getNodeById(2).mode") == 4
    red, green, blue, _ = _body_pixel(canvas, 2)
    assert red > green + 30 and blue > green + 30, "bypassed nodes are tinted purple"
    prompt = canvas.js("loom.toPrompt()")
    assert "2" not in prompt and prompt["3"]["inputs"]["images"] == ["1", 0], (
        "bypass passes the image through"
    )

    canvas.page.keyboard.press("Control+b")
    assert _body_pixel(canvas, 2) == normal


def test_node_menu_offers_no_subgraph_conversion_that_would_delete_nodes(canvas: Canvas) -> None:
    x, y = canvas.to_screen(*canvas.js("(n => [n.pos[0] + 20, n.pos[1] + 10])(loom.graph.getNodeById(2))"))
    canvas.page.mouse.click(x, y, button="right")
    canvas.page.wait_for_selector(".litecontextmenu")
    entries = _menu_entries(canvas)
    canvas.shot("node-menu")
    assert "Mode" in entries and not [e for e in entries if "Subgraph" in e]
    canvas.page.keyboard.press("Escape")
    canvas.js("for (const n of loom.graph.nodes) loom.canvas.select(n)")
    canvas.page.mouse.click(700, 750, button="right")
    assert not [e for e in _menu_entries(canvas) if "Subgraph" in e]
    assert canvas.node_types() == ["EmptyImage", "ImageInvert", "SaveImage"]


def _search(canvas: Canvas, query: str) -> list[str]:
    canvas.page.fill(".search input", query)
    return canvas.page.locator(".search li[data-type]").evaluate_all("rows => rows.map(r => r.dataset.type)")


def test_search_ranks_display_name_matches_first_and_testing_nodes_last(canvas: Canvas) -> None:
    canvas.page.keyboard.press("/")
    canvas.page.wait_for_selector(".search input")
    assert _search(canvas, "clip text")[0] == "CLIPTextEncode"
    found = _search(canvas, "vae decode")
    assert found[0] == "VAEDecode" and found[-1] == "VAEDecodeTiled"
    everything = _search(canvas, "")
    canvas.shot("empty-search")
    assert canvas.page.locator(".search li.category").first.inner_text() != "_for_testing"
    # The list is cut at its first rows; testing nodes, where they appear at all, come after the rest.
    testing = [i for i, node in enumerate(everything) if node in ("VAEDecodeTiled", "VAEEncodeTiled")]
    assert all(i >= len(everything) - len(testing) for i in testing)


def test_comfyui_v04_text_to_image_file_loads_without_duplicated_sockets(canvas: Canvas) -> None:
    workflow = (DATA / "comfyui_v04_sd15.json").read_bytes()
    canvas.page.set_input_files(
        "#file-input", {"name": "sd15.json", "mimeType": "application/json", "buffer": workflow}
    )
    canvas.wait_for_count("KSampler", 1)
    canvas.shot("opened")
    inputs = canvas.js("Object.fromEntries(loom.graph.nodes.map(n => [n.id, n.inputs.map(i => i.name)]))")
    for node_id, names in inputs.items():
        assert len(names) == len(set(names)), f"node {node_id} has duplicated sockets: {names}"
    assert sorted(inputs["2"]) == ["clip", "text"]
    assert sorted(inputs["5"]) == sorted(
        [
            "model",
            "positive",
            "negative",
            "latent_image",
            "seed",
            "steps",
            "cfg",
            "sampler_name",
            "scheduler",
            "denoise",
        ]
    )
    prompt = canvas.js("loom.toPrompt()")
    assert prompt["5"]["inputs"] == {
        "model": ["1", 0],
        "seed": 1234,
        "steps": 12,
        "cfg": 6.5,
        "sampler_name": "euler",
        "scheduler": "normal",
        "positive": ["2", 0],
        "negative": ["3", 0],
        "latent_image": ["4", 0],
        "denoise": 1,
    }
    assert prompt["2"]["inputs"] == {"text": "a small blue square at the top", "clip": ["1", 1]}
    assert prompt["6"]["inputs"] == {"samples": ["5", 0], "vae": ["1", 2]}
    saved = json.loads(json.dumps(canvas.js("loom.graph.serialize()")))
    assert [link[1:5] for link in saved["links"] if link[0] == 10] == [[8, 0, 5, 4]]


def test_comfyui_subgraphs_are_named_kept_through_the_autosave_and_not_queued(canvas: Canvas) -> None:
    workflow = (DATA / "comfyui_subgraph.json").read_bytes()
    canvas.page.set_input_files(
        "#file-input", {"name": "sub.json", "mimeType": "application/json", "buffer": workflow}
    )
    canvas.wait_for_count("SaveImage", 1)
    canvas.shot("loaded")
    assert "Blue square" in canvas.page.locator(".toast.error").last.inner_text()
    subgraph_id = json.loads(workflow)["definitions"]["subgraphs"][0]["id"]
    canvas.wait_until_saved(subgraph_id)
    canvas.open()  # the autosaved copy
    assert canvas.js("loom.graph.getNodeById(1).title") == "Subgraph: Blue square"
    saved = canvas.js("loom.graph.serialize()")
    (definition,) = saved["definitions"]["subgraphs"]
    assert definition["id"] == subgraph_id and [n["type"] for n in definition["nodes"]] == ["EmptyImage"]
    requests: list[str] = []
    canvas.page.on("request", lambda request: requests.append(request.url))
    canvas.page.click("#queue-button")
    assert "Blue square" in canvas.page.locator(".toast.error").last.inner_text()
    assert not [url for url in requests if url.endswith("/prompt")]
