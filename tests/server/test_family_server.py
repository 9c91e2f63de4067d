"""The official front end's default graph (Z-Image Turbo) through the real server, on tiny stand-ins, and a
UI-format workflow with a subgraph converted and run over HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engine.test_ui_subgraphs import SCALE, workflow
from tests.nodes.flow_fixtures_new import write_zimage_files, zimage_workflow
from tests.server.conftest import Server, connect, events_until_done, start_server


@pytest.fixture(scope="module")
def family_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    base = tmp_path_factory.mktemp("family_server")
    models = base / "zimage_models"
    write_zimage_files(models)
    config = base / "extra_model_paths.yaml"
    config.write_text(
        f"tiny:\n    base_path: {models}\n    diffusion_models: diffusion_models\n"
        "    text_encoders: text_encoders\n    vae: vae\n"
    )
    running = start_server(base, "--extra-model-paths-config", str(config))
    yield running
    running.stop()


async def test_z_image_turbo_default_graph_runs(family_server: Server) -> None:
    async with connect(family_server) as client, client.websocket("z") as ws:
        info = await client.get("/object_info/UNETLoader")
        assert "z_image_turbo_bf16.safetensors" in info["UNETLoader"]["input"]["required"]["unet_name"][0]
        clip_types = (await client.get("/object_info/CLIPLoader"))["CLIPLoader"]["input"]["required"]["type"][
            0
        ]
        assert "lumina2" in clip_types and "qwen_image" in clip_types
        prompt_id = await client.queue(zimage_workflow(seed=5, steps=2), "z")
        await events_until_done(ws, prompt_id)
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
        assert entry["status"]["status_str"] == "success"
        assert entry["outputs"]["10"]["images"][0]["filename"].endswith(".png")


async def test_ui_workflow_with_a_subgraph_converts_and_runs(family_server: Server) -> None:
    async with connect(family_server) as client, client.websocket("s") as ws:
        converted = await client.post("/api/workflow/convert", workflow(SCALE))
        assert sorted(converted) == ["1", "5:7", "5:8", "9"]
        prompt_id = await client.queue(workflow(SCALE), "s")
        await events_until_done(ws, prompt_id)
        entry = (await client.get(f"/history/{prompt_id}"))[prompt_id]
        assert entry["status"]["status_str"] == "success"
