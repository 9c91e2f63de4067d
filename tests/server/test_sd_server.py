"""Stable Diffusion through the real server: ComfyUI's default graph, UI-format workflows, /free."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.nodes.sd_fixtures import text_to_image
from tests.server.conftest import Server, connect, events_until_done, start_server

FIXTURES = Path(__file__).parents[1] / "engine" / "fixtures"


@pytest.fixture(scope="module")
def sd_server(tmp_path_factory: pytest.TempPathFactory, tiny_models_dir: Path) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("sd_server")
    config = base / "extra_model_paths.yaml"
    config.write_text(f"tiny:\n    base_path: {tiny_models_dir}\n    checkpoints: checkpoints\n")
    running = start_server(base, "--extra-model-paths-config", str(config))
    yield running
    running.stop()


def ui_workflow(ckpt: str) -> dict[str, Any]:
    workflow = json.loads((FIXTURES / "default_t2i_v1.json").read_text())
    for node in workflow["nodes"]:
        if node["type"] == "CheckpointLoaderSimple":
            node["widgets_values"] = [ckpt]
        if node["type"] == "EmptyLatentImage":
            node["widgets_values"] = [64, 64, 1]
        if node["type"] == "KSampler":
            node["widgets_values"][2] = 2  # steps
    return workflow


async def test_default_graph_and_seed_change_caches_loader_and_encoders(sd_server: Server) -> None:
    async with connect(sd_server) as client, client.websocket("sd") as ws:
        assert "tiny_sd1.safetensors" in await client.get("/models/checkpoints")
        info = await client.get("/object_info/CheckpointLoaderSimple")
        assert "tiny_sdxl.safetensors" in info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
        # Previews are off by default (ComfyUI's --preview-method none); this prompt asks for them.
        asks = {"extra_data": {"preview_method": "auto"}}
        first = await client.queue(text_to_image("tiny_sd1.safetensors", seed=1), "sd", **asks)
        events = await events_until_done(ws, first)
        assert ("execution_success", first) in [(n, d.get("prompt_id")) for n, d in events if n != "binary"]
        assert any(name == "binary" for name, _ in events), "latent previews arrive as binary frames"
        second = await client.queue(text_to_image("tiny_sd1.safetensors", seed=2), "sd")
        events = await events_until_done(ws, second)
        cached = next(data["nodes"] for name, data in events if name == "execution_cached")
        assert {"4", "6", "7"} <= set(cached)
        executing = [data["node"] for name, data in events if name == "executing" and data["node"]]
        assert executing == ["3", "8", "9"]
        history = (await client.get(f"/history/{second}"))[second]
        assert history["outputs"]["9"]["images"][0]["filename"].endswith(".png")


async def test_ui_format_workflow_is_converted_and_runs(sd_server: Server) -> None:
    workflow = ui_workflow("tiny_sd1.safetensors")
    async with connect(sd_server) as client, client.websocket("ui") as ws:
        converted = await client.post("/api/workflow/convert", workflow)
        assert converted["3"]["class_type"] == "KSampler" and converted["3"]["inputs"]["steps"] == 2
        assert converted["4"]["inputs"]["ckpt_name"] == "tiny_sd1.safetensors"
        prompt_id = await client.queue(workflow, "ui")
        await events_until_done(ws, prompt_id)
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
        assert entry["status"]["status_str"] == "success"


async def test_broken_ui_workflow_is_a_400_naming_the_node(sd_server: Server) -> None:
    workflow = ui_workflow("tiny_sd1.safetensors")
    workflow["nodes"][0]["type"] = "NoSuchNode"
    async with connect(sd_server) as client:
        body = await client.post("/prompt", {"prompt": workflow}, status=400)
        assert "NoSuchNode" in body["error"]["details"]
        await client.post("/api/workflow/convert", {"nodes": "x"}, status=400)


async def test_free_unloads_models_and_next_prompt_still_runs(sd_server: Server) -> None:
    async with connect(sd_server) as client, client.websocket("free") as ws:
        await client.post("/free", {"unload_models": True, "free_memory": True})
        prompt_id = await client.queue(text_to_image("tiny_sd2.safetensors", seed=3), "free")
        await events_until_done(ws, prompt_id)
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
        assert entry["status"]["status_str"] == "success"


async def test_default_workflow_on_the_shipped_model_makes_a_64px_png(sd_server: Server) -> None:
    prompt = json.loads((Path(__file__).parents[2] / "workflows" / "default_text_to_image.json").read_text())
    async with connect(sd_server) as client:
        done = await client.post("/api/run", {"prompt": prompt, "timeout": 120, "inline_images": True})
        assert done["status"] == "success", done
        image = done["outputs"]["9"]["images"][0]
        async with client.session.get(f"{sd_server.url}/view", params=image) as response:
            png = await response.read()
    from io import BytesIO

    from PIL import Image

    assert Image.open(BytesIO(png)).size == (64, 64)
