"""Equivalents of ComfyUI_examples' ControlNet and T2I-Adapter workflows (controlnet/*.png there), in the
UI format, on the tiny SD1 checkpoint and ControlNet stand-ins: they convert, validate and run end to end.

Each graph keeps the example's nodes and wiring (the old ControlNetApply node, DiffControlNetLoader for
the diff depth ControlNet, a T2I-Adapter through ControlNetLoader, two ControlNets mixed) with the
stand-in file names, 64×64 images and a few steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image as PILImage

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.registry import NodeRegistry
from engine.ui_workflow import ui_to_api
from tests.nodes.controlnet_fixtures import write_control_files

Link = tuple[int, int]  # (source node id, output slot)


def ui_graph(
    registry: NodeRegistry, nodes: list[tuple[int, str, list[Any], dict[str, Link]]]
) -> dict[str, Any]:
    """A litegraph workflow from (id, type, widgets_values, {input name: (source id, slot)})."""
    links: list[list[Any]] = []
    out_links: dict[tuple[int, int], list[int]] = {}
    ui_nodes = []
    for node_id, node_type, widgets, wired in nodes:
        spec = registry.get(node_type)
        assert spec is not None, node_type
        inputs = []
        for name, (source, slot) in wired.items():
            item = spec.input(name)
            assert item is not None, f"{node_type}.{name}"
            links.append([len(links) + 1, source, slot, node_id, len(inputs), item.type])
            out_links.setdefault((source, slot), []).append(len(links))
            inputs.append({"name": name, "type": item.type, "link": len(links)})
        ui_nodes.append({"id": node_id, "type": node_type, "pos": [0, 0], "size": [200, 60], "flags": {},
                         "order": node_id, "mode": 0, "inputs": inputs, "properties": {},
                         "widgets_values": widgets, "_spec": spec})  # fmt: skip
    for node in ui_nodes:
        spec = node.pop("_spec")
        node["outputs"] = [
            {"name": o.name, "type": o.type, "links": out_links.get((node["id"], i), [])}
            for i, o in enumerate(spec.outputs)
        ]
    return {"last_node_id": max(n[0] for n in nodes), "last_link_id": len(links), "nodes": ui_nodes,
            "links": links, "version": 0.4}  # fmt: skip


def txt2img(apply: list[tuple[int, str, list[Any], dict[str, Link]]], positive: Link, negative: Link) -> list:
    """The examples' common frame: checkpoint (14), prompts (6, 7), latent (5), KSampler (3), decode, save."""
    return [
        (14, "CheckpointLoaderSimple", ["tiny_sd1.safetensors"], {}),
        (6, "CLIPTextEncode", ["(solo) girl, blue eyes, standing in a grass field"], {"clip": (14, 1)}),
        (7, "CLIPTextEncode", ["(hands), text, error, cropped, (worst quality:1.2)"], {"clip": (14, 1)}),
        (5, "EmptyLatentImage", [64, 64, 1], {}),
        *apply,
        (3, "KSampler", [7, "fixed", 3, 6, "euler", "normal", 1],
         {"model": (14, 0), "positive": positive, "negative": negative, "latent_image": (5, 0)}),
        (8, "VAEDecode", [], {"samples": (3, 0), "vae": (14, 2)}),
        (9, "SaveImage", ["ComfyUI"], {"images": (8, 0)}),
    ]  # fmt: skip


WORKFLOWS: dict[str, Any] = {
    # controlnet_example.png: scribble ControlNet through the old apply node (strength 0.9)
    "scribble": txt2img(
        [
            (12, "ControlNetLoader", ["cn_ldm.safetensors"], {}),
            (11, "LoadImage", ["scribble.png", "image"], {}),
            (
                10,
                "ControlNetApply",
                [0.9],
                {"conditioning": (6, 0), "control_net": (12, 0), "image": (11, 0)},
            ),
        ],
        (10, 0),
        (7, 0),
    ),
    # depth_controlnet.png: a diff ControlNet, loaded against the checkpoint's MODEL
    "depth_diff": txt2img(
        [
            (33, "DiffControlNetLoader", ["cn_diff.safetensors"], {"model": (14, 0)}),
            (20, "LoadImage", ["depth.png", "image"], {}),
            (
                23,
                "ControlNetApply",
                [1.0],
                {"conditioning": (6, 0), "control_net": (33, 0), "image": (20, 0)},
            ),
        ],
        (23, 0),
        (7, 0),
    ),
    # depth_t2i_adapter.png: a T2I-Adapter through the same loader and apply node
    "depth_t2i": txt2img(
        [
            (31, "ControlNetLoader", ["t2i_full.safetensors"], {}),
            (20, "LoadImage", ["depth.png", "image"], {}),
            (
                23,
                "ControlNetApply",
                [1.0],
                {"conditioning": (6, 0), "control_net": (31, 0), "image": (20, 0)},
            ),
        ],
        (23, 0),
        (7, 0),
    ),
    # mixing_controlnets.png: pose (1.0) then scribble (0.8), chained on the positive prompt
    "mixing": txt2img(
        [
            (27, "ControlNetLoader", ["diffusion_pytorch_model.safetensors"], {}),
            (26, "ControlNetLoader", ["cn_bare.safetensors"], {}),
            (21, "LoadImage", ["pose.png", "image"], {}),
            (20, "LoadImage", ["scribble.png", "image"], {}),
            (22, "ControlNetApply", [1], {"conditioning": (6, 0), "control_net": (27, 0), "image": (21, 0)}),
            (
                23,
                "ControlNetApply",
                [0.8],
                {"conditioning": (22, 0), "control_net": (26, 0), "image": (20, 0)},
            ),
        ],
        (23, 0),
        (7, 0),
    ),
    # ComfyUI's ControlNet template: the Advanced node on both prompts, light T2I-Adapter chained after
    "advanced": txt2img(
        [
            (12, "ControlNetLoader", ["cn_ldm.safetensors"], {}),
            (13, "ControlNetLoader", ["t2i_light.safetensors"], {}),
            (11, "LoadImage", ["scribble.png", "image"], {}),
            (
                10,
                "ControlNetApplyAdvanced",
                [0.8, 0.0, 0.8],
                {"positive": (6, 0), "negative": (7, 0), "control_net": (12, 0), "image": (11, 0)},
            ),
            (
                15,
                "ControlNetApplyAdvanced",
                [0.5, 0.2, 1.0],
                {"positive": (10, 0), "negative": (10, 1), "control_net": (13, 0), "image": (11, 0)},
            ),
        ],
        (15, 0),
        (15, 1),
    ),
}


@pytest.fixture
def example_folders(sd_folders: Folders, tiny_models_dir: Path) -> Folders:
    folder = tiny_models_dir / "controlnet"
    if not folder.is_dir():
        write_control_files(folder)
    rng = np.random.default_rng(0)
    for name in ("scribble.png", "depth.png", "pose.png"):
        pixels = (rng.random((48, 80, 3)) > 0.9).astype(np.uint8) * 255  # another size: the hint is fitted
        PILImage.fromarray(pixels).save(sd_folders.input / name)
    return sd_folders


@pytest.mark.parametrize("name", sorted(WORKFLOWS))
def test_example_workflow_converts_validates_and_runs(
    executor: Executor, example_folders: Folders, name: str
) -> None:
    workflow = ui_graph(executor.registry, WORKFLOWS[name])
    prompt = ui_to_api(workflow, executor.registry)
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, name, checked.outputs)
    assert result.status == "success", result.error
    saved = result.outputs["9"]["images"][0]["filename"]
    # the tiny VAE has two levels: a 8×8 latent decodes to 16×16
    assert np.asarray(PILImage.open(example_folders.output / saved)).shape == (16, 16, 3)
