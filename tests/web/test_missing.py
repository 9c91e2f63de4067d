"""What the canvas says about problems before and after queueing: the input row an error names,
missing model files (with the folder they belong in) and missing node types, all at once."""

from __future__ import annotations

import json
from pathlib import Path

from tests.web.conftest import Canvas
from tests.web.test_editing import PIXEL

DATA = Path(__file__).parent / "data"
BAD_REQUEST = "Failed to load resource: the server responded with a status of 400 (Bad Request)"

SAMPLER_WITHOUT_NEGATIVE = """(() => { loom.graph.clear();
    const l = loom.add('CheckpointLoaderSimple', [0, 0]), p = loom.add('CLIPTextEncode', [300, 0]);
    const e = loom.add('EmptyLatentImage', [300, 300]), k = loom.add('KSampler', [700, 0]);
    const d = loom.add('VAEDecode', [1000, 0]), s = loom.add('SaveImage', [1200, 0]);
    l.connect(1, p, 'clip'); l.connect(0, k, 'model'); p.connect(0, k, 'positive');
    e.connect(0, k, 'latent_image'); k.connect(0, d, 'samples');
    l.connect(2, d, 'vae'); d.connect(0, s, 'images');
    loom.canvas.ds.scale = 1; loom.canvas.ds.offset = [-600, 100];
    return k.id; })()"""


def _is_error_red(rgba: list[int]) -> bool:
    return rgba[0] > 200 and rgba[1] < 120 and rgba[2] < 120


def test_error_on_a_socket_input_outlines_that_socket_row(canvas: Canvas) -> None:
    sampler = canvas.js(SAMPLER_WITHOUT_NEGATIVE)
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function(f"loom.feedback.errors.get('{sampler}')?.inputs.has('negative')")
    canvas.shot("negative-missing")
    rows = canvas.js(
        f"""(n => Object.fromEntries(['negative', 'cfg', 'steps'].map(name => {{
            const slot = n.inputs.findIndex(i => i.name === name);
            return [name, [n.pos[0] + 4, n.getInputPos(slot)[1]]]; }})))(loom.graph.getNodeById({sampler}))"""
    )
    assert _is_error_red(canvas.js(PIXEL, rows["negative"])), "the negative socket's row is outlined"
    assert not _is_error_red(canvas.js(PIXEL, rows["cfg"])) and not _is_error_red(
        canvas.js(PIXEL, rows["steps"])
    )
    canvas.errors.remove(BAD_REQUEST)


def _open(canvas: Canvas, workflow: dict) -> None:
    content = json.dumps(workflow).encode()
    canvas.page.set_input_files(
        "#file-input", {"name": "w.json", "mimeType": "application/json", "buffer": content}
    )


def _with_missing_node_type() -> dict:
    workflow = json.loads((DATA / "comfyui_v04_sd15.json").read_text())
    workflow["nodes"].append(
        {"id": 9, "type": "FancyUpscaler", "pos": [1500, 600], "size": [315, 82], "flags": {}, "order": 8,
         "mode": 0, "inputs": [{"name": "image", "type": "IMAGE", "link": None}], "properties": {},
         "widgets_values": [2.0]}
    )  # fmt: skip
    return workflow


def test_missing_model_files_and_node_types_are_named_on_load_and_on_queue(canvas: Canvas) -> None:
    _open(canvas, _with_missing_node_type())
    canvas.wait_for_count("KSampler", 1)
    toast = canvas.page.locator(".toast.error").last.inner_text()
    canvas.shot("loaded")
    assert "FancyUpscaler" in toast
    assert "v1-5-pruned-emaonly.safetensors" in toast and "models/checkpoints" in toast
    canvas.page.locator(".toast").evaluate_all("toasts => toasts.forEach(t => t.remove())")

    requests: list[str] = []
    canvas.page.on("request", lambda request: requests.append(request.url))
    canvas.page.click("#queue-button")
    toast = canvas.page.locator(".toast.error").last.inner_text()
    canvas.shot("queued")
    assert "FancyUpscaler" in toast and "Value not in list" not in toast
    assert toast.count("v1-5-pruned-emaonly.safetensors") == 1 and "models/checkpoints" in toast
    assert not [url for url in requests if url.endswith("/prompt")], "nothing is sent that cannot run"
    errors = canvas.js("[...loom.feedback.errors].map(([id, e]) => [id, [...e.inputs.keys()]])")
    assert errors == [["1", ["ckpt_name"]]]


def test_a_model_file_gone_since_the_page_loaded_is_named_once_with_its_folder(canvas: Canvas) -> None:
    canvas.js(
        """(() => { loom.graph.clear();
            const l = loom.add('CheckpointLoaderSimple', [0, 0]), e = loom.add('EmptyLatentImage', [0, 200]);
            const d = loom.add('VAEDecode', [400, 0]), s = loom.add('SaveImage', [700, 0]);
            const file = l.widgets.find(w => w.name === 'ckpt_name');
            file.options.values = ['gone.safetensors']; file.value = 'gone.safetensors';
            e.connect(0, d, 'samples'); l.connect(2, d, 'vae'); d.connect(0, s, 'images'); })()"""
    )
    canvas.page.click("#queue-button")
    toast = canvas.page.locator(".toast.error").inner_text()
    canvas.shot("gone")
    assert "gone.safetensors is not in models/checkpoints" in toast, toast
    assert toast.count("gone.safetensors") == 1 and "Value not in list" not in toast
    canvas.errors.remove(BAD_REQUEST)
