"""The ComfyUI_examples model-merging and hypernetwork workflows, written here as UI-format graphs of the
same shape (same node types, widget values and links; tiny random-weight models in place of the real
checkpoints), converted with ui_to_api, validated and run end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from engine.diffusion import handles
from engine.executor import Executor
from engine.folders import Folders
from engine.ui_workflow import ui_to_api
from tests.nodes.merge_fixtures import add_checkpoint, write_hypernetwork
from tests.nodes.test_model_saving import header, image, run

SD1 = "tiny_sd1.safetensors"
OUTPUTS = {
    "CheckpointLoaderSimple": ["MODEL", "CLIP", "VAE"],
    "VAELoader": ["VAE"],
    "CLIPTextEncode": ["CONDITIONING"],
    "EmptyLatentImage": ["LATENT"],
    "KSampler": ["LATENT"],
    "VAEDecode": ["IMAGE"],
    "LoadImage": ["IMAGE", "MASK"],
    "VAEEncodeForInpaint": ["LATENT"],
    "RepeatLatentBatch": ["LATENT"],
    "LoraLoader": ["MODEL", "CLIP"],
}


def ui_workflow(nodes: list[tuple[int, str, list[Any], dict[str, tuple[int, int]]]]) -> dict[str, Any]:
    """A litegraph workflow: links numbered in order, each node's inputs and outputs filled in."""
    links: list[list[Any]] = []
    ui_nodes: dict[int, dict[str, Any]] = {}
    for node_id, node_type, widgets, _ in nodes:
        types = OUTPUTS.get(node_type, ["CLIP"] if node_type.startswith("CLIPMerge") else ["MODEL"])
        if node_type in ("SaveImage", "CheckpointSave"):
            types = []
        ui_nodes[node_id] = {
            "id": node_id,
            "type": node_type,
            "pos": [0, 0],
            "size": [200, 60],
            "flags": {},
            "order": node_id,
            "mode": 0,
            "inputs": [],
            "outputs": [{"name": t, "type": t, "links": []} for t in types],
            "properties": {},
            "widgets_values": widgets,
        }
    for node_id, _, _, inputs in nodes:
        for slot, (name, (source, source_slot)) in enumerate(inputs.items()):
            link_type = ui_nodes[source]["outputs"][source_slot]["type"]
            links.append([len(links) + 1, source, source_slot, node_id, slot, link_type])
            ui_nodes[source]["outputs"][source_slot]["links"].append(len(links))
            ui_nodes[node_id]["inputs"].append({"name": name, "type": link_type, "link": len(links)})
    return {
        "last_node_id": max(ui_nodes),
        "last_link_id": len(links),
        "nodes": list(ui_nodes.values()),
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def sampling(
    model: tuple[int, int],
    clip: tuple[int, int],
    vae: tuple[int, int],
    batch: int = 1,
    sampler: str = "euler",
) -> list[Any]:
    """The examples' prompt, latent, KSampler, decode and SaveImage nodes (ids 3 and 5 to 9)."""
    return [
        (6, "CLIPTextEncode", ["beautiful scenery nature glass bottle landscape"], {"clip": clip}),
        (7, "CLIPTextEncode", ["text, watermark"], {"clip": clip}),
        (5, "EmptyLatentImage", [64, 64, batch], {}),
        (
            3,
            "KSampler",
            [156680208700286, "fixed", 2, 8, sampler, "normal", 1],
            {"model": model, "positive": (6, 0), "negative": (7, 0), "latent_image": (5, 0)},
        ),
        (8, "VAEDecode", [], {"samples": (3, 0), "vae": vae}),
        (9, "SaveImage", ["ComfyUI"], {"images": (8, 0)}),
    ]


def convert_and_run(executor: Executor, nodes: list[Any]) -> Any:
    workflow = ui_workflow(nodes)
    return run(executor, ui_to_api(workflow, executor.registry), {"extra_pnginfo": {"workflow": workflow}})


@pytest.fixture
def sd1_models(sd_folders: Folders, tmp_path: Path) -> list[str]:
    """Three SD1 checkpoints and a VAE file (the examples' anime VAE), as the examples load them."""
    names = [
        SD1,
        add_checkpoint(sd_folders, tmp_path / "more", "sd1", 1),
        add_checkpoint(sd_folders, tmp_path / "more", "sd1", 2),
    ]
    vae = handles.load(sd_folders.model_path("checkpoints", names[1])).vae
    sd_folders.models["vae"] = [tmp_path / "vae"]
    (tmp_path / "vae").mkdir()
    save_file(
        {k: v.contiguous() for k, v in vae.get_sd().items()}, str(tmp_path / "vae" / "anime_vae.safetensors")
    )
    return names


def saved_checkpoint(folders: Folders, prefix: str = "checkpoints/ComfyUI") -> Path:
    path = folders.output / f"{prefix}_00001_.safetensors"
    keys, metadata = header(path)
    assert any(k.startswith("model.diffusion_model.") for k in keys) and "workflow" in metadata
    return path


def test_model_merging_basic(executor: Executor, sd_folders: Folders, sd1_models: list[str]) -> None:
    nodes = [
        (4, "CheckpointLoaderSimple", [sd1_models[0]], {}),
        (11, "CheckpointLoaderSimple", [sd1_models[1]], {}),
        (15, "VAELoader", ["anime_vae.safetensors"], {}),
        (17, "ModelMergeSimple", [0.5], {"model1": (4, 0), "model2": (11, 0)}),
        (14, "CheckpointSave", ["checkpoints/ComfyUI"], {"model": (17, 0), "clip": (4, 1), "vae": (15, 0)}),
        *sampling((17, 0), (4, 1), (15, 0), batch=2),
    ]
    result = convert_and_run(executor, nodes)
    assert image(sd_folders, result).std() > 0
    saved_checkpoint(sd_folders)


def test_model_merging_3_checkpoints(executor: Executor, sd_folders: Folders, sd1_models: list[str]) -> None:
    nodes = [
        (4, "CheckpointLoaderSimple", [sd1_models[0]], {}),
        (11, "CheckpointLoaderSimple", [sd1_models[1]], {}),
        (13, "CheckpointLoaderSimple", [sd1_models[2]], {}),
        (15, "VAELoader", ["anime_vae.safetensors"], {}),
        (
            10,
            "ModelMergeBlocks",
            [1, 0.7099999999999997, 0.7199999999999998],
            {"model1": (4, 0), "model2": (11, 0)},
        ),
        (
            12,
            "ModelMergeBlocks",
            [0.6399999999999997, 0.7799999999999998, 0.7399999999999999],
            {"model1": (10, 0), "model2": (13, 0)},
        ),
        (14, "CheckpointSave", ["checkpoints/ComfyUI"], {"model": (12, 0), "clip": (4, 1), "vae": (15, 0)}),
        *sampling((12, 0), (4, 1), (15, 0)),
    ]
    prompt = ui_to_api(ui_workflow(nodes), executor.registry)
    assert prompt["12"]["inputs"] == {
        "model1": ["10", 0],
        "model2": ["13", 0],
        "input": 0.6399999999999997,
        "middle": 0.7799999999999998,
        "out": 0.7399999999999999,
    }
    convert_and_run(executor, nodes)
    saved_checkpoint(sd_folders)


def test_model_merging_lora(
    executor: Executor, sd_folders: Folders, sd1_models: list[str], tmp_path: Path
) -> None:
    generator = torch.Generator().manual_seed(0)
    lora = {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.randn(
            2, 32, 1, 1, generator=generator
        ),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.randn(
            32, 2, 1, 1, generator=generator
        ),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(
            2, 64, generator=generator
        ),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(
            64, 2, generator=generator
        ),
    }
    sd_folders.models["loras"] = [tmp_path / "loras"]
    (tmp_path / "loras").mkdir()
    save_file(lora, str(tmp_path / "loras" / "contrast_fix.safetensors"))
    nodes = [
        (4, "CheckpointLoaderSimple", [sd1_models[0]], {}),
        (11, "CheckpointLoaderSimple", [sd1_models[1]], {}),
        (15, "VAELoader", ["anime_vae.safetensors"], {}),
        (17, "ModelMergeSimple", [0.49999999999999956], {"model1": (4, 0), "model2": (11, 0)}),
        (18, "LoraLoader", ["contrast_fix.safetensors", 1, 1], {"model": (17, 0), "clip": (4, 1)}),
        (14, "CheckpointSave", ["checkpoints/ComfyUI"], {"model": (18, 0), "clip": (18, 1), "vae": (15, 0)}),
        *sampling((18, 0), (18, 1), (15, 0)),
    ]
    merged = convert_and_run(executor, nodes)
    # The saved checkpoint holds the merge with the LoRA baked into both UNet and text encoder.
    path = saved_checkpoint(sd_folders)
    sd_folders.models["checkpoints"] = [*sd_folders.models["checkpoints"], path.parent]
    reloaded = [
        (4, "CheckpointLoaderSimple", [path.name], {}),
        (15, "VAELoader", ["anime_vae.safetensors"], {}),
        *sampling((4, 0), (4, 1), (15, 0)),
    ]
    assert np.array_equal(image(sd_folders, convert_and_run(executor, reloaded)), image(sd_folders, merged))


def test_model_merging_inpaint(executor: Executor, sd_folders: Folders, sd1_models: list[str]) -> None:
    """(inpaint - base) + other, as the example builds an inpainting model (an SD1 model stands in for
    the inpainting one: the tiny models have no 9-channel variant)."""
    from PIL import Image as PILImage

    pixels = np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8)
    pixels[16:48, 16:48, 3] = 0  # transparent: the area to inpaint
    PILImage.fromarray(pixels, "RGBA").save(sd_folders.input / "yosemite_inpaint_example.png")
    nodes = [
        (4, "CheckpointLoaderSimple", [sd1_models[0]], {}),
        (11, "CheckpointLoaderSimple", [sd1_models[1]], {}),
        (13, "CheckpointLoaderSimple", [sd1_models[2]], {}),
        (15, "VAELoader", ["anime_vae.safetensors"], {}),
        (17, "ModelMergeSubtract", [1], {"model1": (4, 0), "model2": (11, 0)}),
        (18, "ModelMergeAdd", [], {"model1": (17, 0), "model2": (13, 0)}),
        (14, "CheckpointSave", ["checkpoints/ComfyUI"], {"model": (18, 0), "clip": (13, 1), "vae": (15, 0)}),
        (19, "LoadImage", ["yosemite_inpaint_example.png", "image"], {}),
        (20, "VAEEncodeForInpaint", [6], {"pixels": (19, 0), "vae": (15, 0), "mask": (19, 1)}),
        (21, "RepeatLatentBatch", [2], {"samples": (20, 0)}),
        *[n for n in sampling((18, 0), (13, 1), (15, 0)) if n[0] != 5],
    ]
    nodes = [
        (i, t, w, {**ins, "latent_image": (21, 0)} if t == "KSampler" else ins) for i, t, w, ins in nodes
    ]
    result = convert_and_run(executor, nodes)
    assert len(result.outputs["9"]["images"]) == 2
    saved_checkpoint(sd_folders)


def test_model_merging_cosxl_style_sdxl(executor: Executor, sd_folders: Folders, tmp_path: Path) -> None:
    """(cosxl - sdxl) + other for the model and the text encoders, then ModelMergeSDXL by block, sampled
    as CosXL is: ModelSamplingContinuousEDM, v_prediction."""
    names = [
        "tiny_sdxl.safetensors",
        *(add_checkpoint(sd_folders, tmp_path / "more", "sdxl", s) for s in (1, 2)),
    ]
    sdxl_ratios = [1] * 14 + [0.5] * 5 + [1] * 5
    nodes = [
        (4, "CheckpointLoaderSimple", [names[0]], {}),
        (16, "CheckpointLoaderSimple", [names[1]], {}),
        (12, "CheckpointLoaderSimple", [names[2]], {}),
        (15, "ModelMergeSubtract", [1], {"model1": (4, 0), "model2": (16, 0)}),
        (17, "ModelMergeAdd", [], {"model1": (15, 0), "model2": (12, 0)}),
        (13, "ModelMergeSDXL", sdxl_ratios, {"model1": (17, 0), "model2": (12, 0)}),
        (18, "CLIPMergeSubtract", [1], {"clip1": (4, 1), "clip2": (16, 1)}),
        (19, "CLIPMergeAdd", [], {"clip1": (18, 0), "clip2": (12, 1)}),
        (
            24,
            "CheckpointSave",
            ["checkpoints/cosxl_merge"],
            {"model": (13, 0), "clip": (19, 0), "vae": (4, 2)},
        ),
        (20, "ModelSamplingContinuousEDM", ["v_prediction", 120, 0.002], {"model": (13, 0)}),
        *sampling((20, 0), (19, 0), (4, 2)),
    ]
    prompt = ui_to_api(ui_workflow(nodes), executor.registry)
    assert prompt["13"]["inputs"]["output_blocks.0"] == 0.5 and prompt["13"]["inputs"]["out."] == 1
    assert prompt["20"]["inputs"] == {"model": ["13", 0], "sampling": "v_prediction", "sigma_max": 120,
                                      "sigma_min": 0.002}  # fmt: skip
    result = convert_and_run(executor, nodes)
    assert image(sd_folders, result).std() > 0
    _, metadata = header(saved_checkpoint(sd_folders, "checkpoints/cosxl_merge"))
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base"


def test_hypernetwork_example(executor: Executor, sd_folders: Folders, tmp_path: Path) -> None:
    sd_folders.models["hypernetworks"] = [tmp_path / "hypernetworks"]
    write_hypernetwork(tmp_path / "hypernetworks" / "dantionMarbleStatues_10.pt", (64, 32))
    nodes = [
        (4, "CheckpointLoaderSimple", [SD1], {}),
        (10, "HypernetworkLoader", ["dantionMarbleStatues_10.pt", 1], {"model": (4, 0)}),
        *sampling((10, 0), (4, 1), (4, 2), sampler="uni_pc_bh2"),
    ]
    with_hypernetwork = image(sd_folders, convert_and_run(executor, nodes))
    without = [
        (4, "CheckpointLoaderSimple", [SD1], {}),
        *sampling((4, 0), (4, 1), (4, 2), sampler="uni_pc_bh2"),
    ]
    assert not np.array_equal(with_hypernetwork, image(sd_folders, convert_and_run(executor, without)))
