"""What a new user sees after `make run`: the default graph on Loom's shipped model makes a picture."""

from __future__ import annotations

import io
import urllib.request

import numpy as np
from PIL import Image

from tests.web.conftest import Canvas
from training.classify import detect


def test_first_open_queues_the_default_graph_and_shows_the_picture(shipped_canvas: Canvas) -> None:
    canvas = shipped_canvas
    canvas.shot("opened")
    prompt = canvas.js("loom.toPrompt()")
    by_type = {entry["class_type"]: entry["inputs"] for entry in prompt.values()}
    assert by_type["CheckpointLoaderSimple"] == {"ckpt_name": "loom_default.safetensors"}
    texts = sorted(
        entry["inputs"]["text"] for entry in prompt.values() if entry["class_type"] == "CLIPTextEncode"
    )
    assert texts == ["", "a large red circle on the left"]

    # The page draws a random seed; pin it so the judged picture is the same on every run.
    canvas.js(
        "loom.graph.nodes.find(n => n.type === 'KSampler').widgets.find(w => w.name === 'seed').value = 1"
    )
    save = canvas.js("String(loom.graph.nodes.find(n => n.type === 'SaveImage').id)")
    # Everything the status line says, however briefly (the shipped model loads in under a second).
    canvas.js(
        """window.seenStatus = [];
        const line = document.getElementById('run-status');
        new MutationObserver(() => seenStatus.push(line.textContent))
            .observe(line, { childList: true, characterData: true, subtree: true })"""
    )
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function(f"loom.feedback.images.get('{save}')?.[0]?.complete", timeout=90000)
    canvas.shot("picture")
    seen = canvas.js("seenStatus")
    assert any(text.startswith("Loading the model loom_default.safetensors") for text in seen), seen
    canvas.page.wait_for_function("seenStatus.some(text => text.startsWith('Finished in'))")
    src = canvas.js(f"loom.feedback.images.get('{save}')[0].src")
    with urllib.request.urlopen(src) as response:  # the same URL the page shows
        pixels = np.asarray(Image.open(io.BytesIO(response.read())).convert("RGB"))
    assert pixels.shape == (64, 64, 3)
    found = detect(pixels, max_objects=1)
    assert found and (found[0].obj.colour, found[0].obj.position) == ("red", "on the left")
