"""The canvas in a real browser: default graph, queueing, node search, typed links, errors on nodes."""

from __future__ import annotations

import json

from playwright.sync_api import Browser, Route

from tests.web.conftest import ARTIFACTS, Canvas

FALLBACK = ["EmptyImage", "ImageInvert", "SaveImage"]


def test_page_loads_with_the_runnable_fallback_graph(canvas: Canvas) -> None:
    canvas.shot("loaded")
    assert canvas.node_types() == FALLBACK
    assert canvas.js("loom.graph.links.size") == 2
    assert canvas.page.locator("#connection.online").count() == 1
    prompt = canvas.js("loom.toPrompt()")
    assert prompt["3"]["inputs"]["images"] == ["2", 0]
    assert prompt["1"]["inputs"] == {"width": 64, "height": 64, "batch_size": 1, "color": 0x3366CC}


def _with_stable_diffusion(route: Route) -> None:
    """/object_info plus ComfyUI's text-to-image nodes, as they will be once those land."""
    info = json.loads(route.fetch().text())
    clip = ["CLIP", {}]
    info["CheckpointLoaderSimple"] = _node(
        "CheckpointLoaderSimple",
        {"ckpt_name": [["other.safetensors", "loom_default_tiny.safetensors"], {}]},
        ["MODEL", "CLIP", "VAE"],
    )
    info["CLIPTextEncode"] = _node(
        "CLIPTextEncode", {"text": ["STRING", {"multiline": True}], "clip": clip}, ["CONDITIONING"]
    )
    info["EmptyLatentImage"] = _node(
        "EmptyLatentImage",
        {name: ["INT", {"default": 512, "min": 16, "max": 16384, "step": 8}] for name in ("width", "height")}
        | {"batch_size": ["INT", {"default": 1, "min": 1, "max": 4096}]},
        ["LATENT"],
    )
    info["KSampler"] = _node(
        "KSampler",
        {
            "model": ["MODEL", {}],
            "seed": ["INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}],
            "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
            "cfg": ["FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01}],
            "sampler_name": [["euler", "dpmpp_2m"], {}],
            "scheduler": [["normal", "karras"], {}],
            "positive": ["CONDITIONING", {}],
            "negative": ["CONDITIONING", {}],
            "latent_image": ["LATENT", {}],
            "denoise": ["FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}],
        },
        ["LATENT"],
    )
    info["VAEDecode"] = _node("VAEDecode", {"samples": ["LATENT", {}], "vae": ["VAE", {}]}, ["IMAGE"])
    route.fulfill(json=info)


def _node(name: str, required: dict, outputs: list[str]) -> dict:
    return {
        "input": {"required": required},
        "input_order": {"required": list(required)},
        "output": outputs,
        "output_is_list": [False] * len(outputs),
        "output_name": outputs,
        "name": name,
        "display_name": name,
        "description": "",
        "category": "sampling",
        "output_node": False,
    }


def test_default_graph_is_text_to_image_on_the_shipped_checkpoint(canvas: Canvas) -> None:
    canvas.page.route("**/object_info", _with_stable_diffusion)
    canvas.js("localStorage.clear()")
    canvas.open()
    canvas.shot("text-to-image")
    expected = ["CheckpointLoaderSimple", "CLIPTextEncode", "CLIPTextEncode", "EmptyLatentImage"]
    expected += ["KSampler", "VAEDecode", "SaveImage", "Note"]
    assert sorted(canvas.node_types()) == sorted(expected)
    prompt = canvas.js("loom.toPrompt()")
    by_type = {entry["class_type"]: entry["inputs"] for entry in prompt.values()}
    assert by_type["CheckpointLoaderSimple"] == {"ckpt_name": "loom_default_tiny.safetensors"}
    assert by_type["EmptyLatentImage"] == {"width": 64, "height": 64, "batch_size": 1}
    sampler = by_type["KSampler"]
    assert (sampler["steps"], sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (
        20,
        7,
        "euler",
        "normal",
    )
    assert "control_after_generate" not in sampler
    assert all(isinstance(sampler[name], list) for name in ("model", "positive", "negative", "latent_image"))
    widgets = canvas.js("loom.graph.nodes.find(n => n.type === 'KSampler').widgets.map(w => w.name)")
    assert widgets[:2] == ["seed", "control_after_generate"]


def test_queue_puts_the_image_on_the_save_node_and_in_the_gallery(canvas: Canvas) -> None:
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function("loom.feedback.images.get('3')?.[0]?.complete", timeout=20000)
    canvas.shot("image-on-node")
    src = canvas.js("loom.feedback.images.get('3')[0].src")
    assert "/view?" in src and "type=output" in src
    canvas.page.click("#queue-panel-button")
    canvas.page.wait_for_selector("#gallery img")
    canvas.shot("gallery")
    canvas.page.click("#gallery img")
    canvas.page.wait_for_selector(".lightbox img")
    canvas.shot("lightbox")
    canvas.page.click(".lightbox button:has-text('Load workflow')")
    assert canvas.node_types() == FALLBACK


def test_ctrl_enter_queues_batches_and_seeds_move_on(canvas: Canvas) -> None:
    canvas.page.fill("#batch-count", "2")
    canvas.page.click("#graph", position={"x": 700, "y": 700})
    before = canvas.js("loom.graph.nodes.length")
    canvas.page.keyboard.press("Control+Enter")
    canvas.page.wait_for_function("loom.feedback.images.get('3')?.length", timeout=20000)
    history = canvas.js("fetch('/history').then(r => r.json())")
    assert len(history) >= 2
    assert canvas.js("loom.graph.nodes.length") == before


def test_search_box_adds_a_node_with_its_widgets_at_the_cursor(canvas: Canvas) -> None:
    canvas.open_search(300, 650)
    canvas.page.keyboard.type("upscale image")
    canvas.page.wait_for_selector(".search li")
    canvas.shot("search")
    assert canvas.page.locator(".search li").first.get_attribute("data-type") == "ImageScale"
    canvas.page.keyboard.press("Enter")
    canvas.shot("added")
    node = canvas.js(
        """(() => { const n = loom.graph.nodes.find(n => n.type === 'ImageScale');
                    return { widgets: n.widgets.map(w => [w.name, w.value]), pos: [...n.pos] }; })()"""
    )
    assert node["widgets"] == [
        ["upscale_method", "nearest-exact"],
        ["width", 512],
        ["height", 512],
        ["crop", "disabled"],
    ]
    x, y = canvas.to_screen(*node["pos"])
    assert abs(x - 300) < 2 and abs(y - 650) < 2


def test_search_finds_nodes_by_category_and_description(canvas: Canvas) -> None:
    canvas.page.keyboard.press("/")
    canvas.page.keyboard.type("postprocessing")
    rows = canvas.page.locator(".search li").evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert "ImageBlend" in rows
    canvas.page.fill(".search input", "grey-scale")
    found = canvas.page.locator(".search li").evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert "MaskToImage" in found  # its description says grey-scale


def _drag(canvas: Canvas, start: tuple[float, float], end: tuple[float, float]) -> None:
    mouse = canvas.page.mouse
    mouse.move(*start)
    mouse.down()
    mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    mouse.move(*end, steps=5)
    mouse.up()


def test_links_only_join_matching_types(canvas: Canvas) -> None:
    mask_id = canvas.js("loom.add('MaskToImage', [80, 420]).id")
    canvas.js("loom.graph.getNodeById(2).disconnectInput(0)")
    image_out = canvas.slot_position(1, 0, output=True)
    _drag(canvas, image_out, canvas.slot_position(mask_id, 0, output=False))
    canvas.shot("refused")
    assert canvas.js(f"loom.graph.getNodeById({mask_id}).inputs[0].link") is None
    _drag(canvas, image_out, canvas.slot_position(2, 0, output=False))
    canvas.shot("accepted")
    assert canvas.js("loom.graph.getNodeById(2).inputs[0].link") is not None


def test_link_dropped_on_empty_canvas_offers_nodes_that_take_it(canvas: Canvas) -> None:
    _drag(canvas, canvas.slot_position(1, 0, output=True), (300, 700))
    canvas.page.wait_for_selector(".search li")
    offered = canvas.page.locator(".search li").evaluate_all("rows => rows.map(r => r.dataset.type)")
    assert "ImageInvert" in offered and "MaskToImage" not in offered and "EmptyImage" not in offered
    canvas.page.keyboard.type("invert")
    canvas.page.keyboard.press("Enter")
    canvas.shot("connected")
    linked = "loom.graph.nodes.filter(n => n.type === 'ImageInvert' && n.inputs[0].link != null).length"
    assert canvas.js(linked) == 2


def test_validation_error_outlines_the_node_and_names_the_input(canvas: Canvas) -> None:
    canvas.js("loom.graph.getNodeById(1).widgets.find(w => w.name === 'width').value = 0")
    canvas.page.click("#queue-button")
    canvas.page.wait_for_selector(".toast.error")
    canvas.shot("validation")
    errors = canvas.js("[...loom.feedback.errors].map(([id, e]) => [id, [...e.inputs.keys()]])")
    assert errors == [["1", ["width"]]]
    assert "width" in canvas.page.locator(".toast.error").inner_text()
    canvas.errors.remove("Failed to load resource: the server responded with a status of 400 (Bad Request)")


def test_runtime_error_is_shown_on_the_node(canvas: Canvas) -> None:
    canvas.js(
        """(() => { loom.graph.clear();
            const boom = loom.add('Explode', [100, 100]);
            const show = loom.add('ShowNumber', [400, 100]);
            boom.connect(0, show, 0); })()"""
    )
    canvas.page.click("#queue-button")
    canvas.page.wait_for_function("loom.feedback.errors.size > 0", timeout=20000)
    canvas.shot("runtime-error")
    message = canvas.js("[...loom.feedback.errors.values()][0].message")
    assert "cannot handle 1" in message


def test_a_widget_becomes_an_input_when_linked_and_a_widget_again_when_unlinked(canvas: Canvas) -> None:
    source = canvas.js("loom.add('PrimitiveInt', [-300, 300]).id")
    canvas.js(f"loom.graph.getNodeById({source}).connect(0, loom.graph.getNodeById(1), 'width')")
    canvas.shot("linked")
    assert canvas.js("loom.toPrompt()")["1"]["inputs"]["width"] == [str(source), 0]
    canvas.js("(n => n.disconnectInput(n.findInputSlot('width')))(loom.graph.getNodeById(1))")
    canvas.shot("unlinked")
    assert canvas.js("loom.toPrompt()")["1"]["inputs"]["width"] == 64


def test_node_packs_front_end_scripts_are_loaded(canvas: Canvas) -> None:
    assert "/extensions/loom_toolbox/toolbox.js" in canvas.js("loom.extensions")
    assert "ShowText" in canvas.js("Object.keys(loom.info)")  # the pack's nodes are in the palette too


def test_high_dpi_screens_get_a_sharp_canvas_that_still_takes_clicks(
    browser: Browser, server_url: str
) -> None:
    context = browser.new_context(viewport={"width": 1000, "height": 700}, device_scale_factor=2)
    page = context.new_page()
    try:
        page.goto(server_url)
        page.wait_for_selector("body[data-ready=true]")
        size = page.evaluate(
            "(() => { const c = document.getElementById('graph'); return [c.width, c.clientWidth]; })()"
        )
        assert size == [2000, 1000]
        arrow = """() => {
            const n = loom.graph.getNodeById(1), w = n.widgets[0], { offset, scale } = loom.canvas.ds;
            const [x, y] = [n.pos[0] + n.size[0] - 20, n.pos[1] + w.y + 10];
            return [(x + offset[0]) * scale, (y + offset[1]) * scale];
        }"""
        page.mouse.click(*page.evaluate(arrow))
        assert page.evaluate("loom.graph.getNodeById(1).widgets[0].value") == 65
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=ARTIFACTS / "high_dpi.png")
    finally:
        context.close()
