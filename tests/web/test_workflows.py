"""Workflows in and out of the canvas: ComfyUI files, Loom PNGs, API JSON, localStorage, undo, speed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.web.conftest import Canvas

DATA = Path(__file__).parent / "data"


def _open_file(canvas: Canvas, name: str, content: bytes, mime: str) -> None:
    canvas.page.set_input_files("#file-input", {"name": name, "mimeType": mime, "buffer": content})
    canvas.page.wait_for_timeout(200)


def test_comfyui_v04_file_restores_its_graph_and_marks_missing_nodes(canvas: Canvas) -> None:
    _open_file(canvas, "comfy.json", (DATA / "comfyui_v04.json").read_bytes(), "application/json")
    canvas.shot("opened")
    types = canvas.node_types()
    assert sorted(types) == sorted(
        ["EmptyImage", "Reroute", "ImageInvert", "SaveImage", "FancyUpscaler", "PrimitiveNode", "Note"]
    )
    assert canvas.js("loom.graph.getNodeById(5).title") == "Missing: FancyUpscaler"
    assert "FancyUpscaler" in canvas.page.locator(".toast.error").inner_text()
    assert canvas.js("loom.graph.groups.map(g => g.title)") == ["Pipeline"]
    assert canvas.js("loom.graph.getNodeById(7).widgets[0].value") == "Made in ComfyUI"
    prompt = canvas.js("loom.toPrompt()")
    assert set(prompt) == {"1", "3", "4"}, "virtual and missing nodes are not sent"
    assert prompt["1"]["inputs"] == {"width": 40, "height": 48, "batch_size": 1, "color": 0xFF0000}
    assert prompt["3"]["inputs"] == {"image": ["1", 0]}, "the reroute is followed to its source"
    assert prompt["4"]["inputs"] == {"images": ["3", 0], "filename_prefix": "ComfyUI"}
    saved = canvas.js("loom.graph.serialize()")
    missing = next(node for node in saved["nodes"] if node["id"] == 5)
    assert missing["type"] == "FancyUpscaler" and missing["widgets_values"] == [2.0, "lanczos"]


def test_comfyui_v1_file_restores_its_graph(canvas: Canvas) -> None:
    _open_file(canvas, "v1.json", (DATA / "comfyui_v1.json").read_bytes(), "application/json")
    canvas.shot("opened")
    assert canvas.node_types() == ["EmptyImage", "PreviewImage"]
    prompt = canvas.js("loom.toPrompt()")
    assert prompt["1"]["inputs"] == {"width": 32, "height": 24, "batch_size": 2, "color": 255}
    assert prompt["2"]["inputs"] == {"images": ["1", 0]}


def test_api_format_json_becomes_a_graph(canvas: Canvas) -> None:
    api = {
        "5": {"class_type": "EmptyImage", "inputs": {"width": 16, "height": 16, "batch_size": 1, "color": 7}},
        "6": {"class_type": "ImageInvert", "inputs": {"image": ["5", 0]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }
    _open_file(canvas, "api.json", json.dumps(api).encode(), "application/json")
    canvas.shot("opened")
    prompt = canvas.js("loom.toPrompt()")
    assert {key: value["inputs"] for key, value in prompt.items()} == {
        key: value["inputs"] for key, value in api.items()
    }


def test_loom_png_restores_the_graph_that_made_it(canvas: Canvas) -> None:
    canvas.js("loom.graph.getNodeById(1).widgets.find(w => w.name === 'color').value = 0x00ff00")
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function("loom.feedback.images.get('3')?.[0]?.complete", timeout=20000)
    png = canvas.page.request.get(canvas.js("loom.feedback.images.get('3')[0].src")).body()
    canvas.page.click("#default-button")
    assert canvas.js("loom.graph.getNodeById(1).widgets[3].value") == 0x3366CC
    _open_file(canvas, "loom.png", png, "image/png")
    canvas.shot("restored")
    assert canvas.js("loom.graph.getNodeById(1).widgets[3].value") == 0x00FF00
    assert canvas.node_types() == ["EmptyImage", "ImageInvert", "SaveImage"]


def test_workflow_survives_a_reload(canvas: Canvas) -> None:
    canvas.add_from_search("blend", 300, 650)
    canvas.wait_until_saved("ImageBlend")
    canvas.open()
    canvas.shot("reloaded")
    assert "ImageBlend" in canvas.node_types()


def test_undo_redo_and_copy_paste(canvas: Canvas) -> None:
    canvas.add_from_search("batch images", 300, 650)
    canvas.wait_for_count("ImageBatch", 1)
    canvas.wait_until_saved("ImageBatch")  # the undo history has recorded the addition
    canvas.page.click("#graph", position={"x": 360, "y": 690})
    canvas.page.keyboard.press("Control+c")
    canvas.page.mouse.move(500, 700)
    canvas.page.keyboard.press("Control+v")
    canvas.wait_for_count("ImageBatch", 2)
    canvas.wait_until_saved("ImageBatch", 2)
    canvas.shot("pasted")
    for keys, count in (("Control+z", 1), ("Control+z", 0), ("Control+y", 1)):
        canvas.page.keyboard.press(keys)
        canvas.wait_for_count("ImageBatch", count)
        canvas.wait_until_saved("ImageBatch", count)


def test_save_downloads_the_ui_workflow(canvas: Canvas) -> None:
    with canvas.page.expect_download() as download:
        canvas.page.click("#save-button")
    saved = json.loads(Path(download.value.path()).read_text())
    assert [node["type"] for node in saved["nodes"]] == ["EmptyImage", "ImageInvert", "SaveImage"]
    assert saved["nodes"][0]["widgets_values"] == [64, 64, 1, 0x3366CC]


BUILD_300 = """() => {
    loom.graph.clear();
    let previous = null;
    for (let i = 0; i < 300; i++) {
        const type = ['EmptyImage', 'ImageScale', 'ImageBlend', 'ImageInvert', 'SaveImage'][i % 5];
        const node = loom.add(type, [(i % 20) * 340, Math.floor(i / 20) * 260]);
        if (previous && node.inputs.length && previous.outputs.length) previous.connect(0, node, 0);
        previous = node.outputs.length ? node : null;
    }
    return loom.graph.serialize();
}"""

MEASURE = """async (workflow) => {
    const start = performance.now();
    loom.load(workflow);
    loom.canvas.draw(true, true);
    await new Promise(requestAnimationFrame);
    return performance.now() - start;
}"""


def test_300_node_workflow_loads_and_is_interactive_within_a_second(canvas: Canvas) -> None:
    workflow = canvas.js(BUILD_300)
    assert len(workflow["nodes"]) == 300
    canvas.js("loom.load({ nodes: [], links: [], version: 0.4 })")
    elapsed = min(canvas.js(MEASURE, workflow) for _ in range(3))
    canvas.shot("300-nodes")
    # A fresh page with the 300 nodes in localStorage: navigation to the first frame after ready.
    canvas.open()
    page_ready = canvas.js("new Promise(r => requestAnimationFrame(() => r(performance.now())))")
    print(f"300 nodes: load + draw {elapsed:.0f} ms; fresh page to first frame {page_ready:.0f} ms")
    assert canvas.js("loom.graph.nodes.length") == 300
    assert elapsed < 1000
    assert page_ready < 1000
