"""Workflows of the ComfyUI_examples families that the core nodes serve (outpainting, inpainting with
InpaintModelConditioning, noisy latent composition, area composition), written here in the same shape,
run end to end on the tiny random-weight SD1 model; one also goes through UI-format conversion."""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image as PILImage

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.ui_workflow import ui_to_api

CKPT = "tiny_sd1.safetensors"


def run(executor: Executor, prompt: dict[str, Any]) -> Any:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "family", checked.outputs)
    assert result.status == "success", result.error
    return result


def sampler(
    latent: list[Any], positive: list[Any], negative: list[Any], denoise: float = 1.0
) -> dict[str, Any]:
    return {
        "class_type": "KSampler",
        "inputs": {
            "seed": 3,
            "steps": 2,
            "cfg": 5.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": denoise,
            "model": ["ckpt", 0],
            "positive": positive,
            "negative": negative,
            "latent_image": latent,
        },
    }


def base(loom_folders: Folders) -> dict[str, Any]:
    PILImage.fromarray(np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(
        loom_folders.input / "photo.png"
    )
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "load": {"class_type": "LoadImage", "inputs": {"image": "photo.png"}},
    }


def saved(result: Any, node: str) -> list[dict[str, str]]:
    return result.outputs[node]["images"]


def test_outpainting(executor: Executor, sd_folders: Folders) -> None:
    prompt = base(sd_folders)
    prompt["pad"] = {
        "class_type": "ImagePadForOutpaint",
        "inputs": {"image": ["load", 0], "left": 16, "top": 0, "right": 16, "bottom": 8, "feathering": 8},
    }
    prompt["enc"] = {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["pad", 0], "vae": ["ckpt", 2], "mask": ["pad", 1], "grow_mask_by": 4},
    }
    prompt["ks"] = sampler(["enc", 0], ["pos", 0], ["neg", 0])
    prompt["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}}
    prompt["save"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["dec", 0], "filename_prefix": "outpaint"},
    }
    image = saved(run(executor, prompt), "save")[0]
    assert PILImage.open(sd_folders.output / image["filename"]).size == (80, 56)


def test_inpaint_model_conditioning(executor: Executor, sd_folders: Folders) -> None:
    prompt = base(sd_folders)
    prompt["mask"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 16, "height": 16}}
    prompt["big"] = {
        "class_type": "MaskComposite",
        "inputs": {"destination": ["zero", 0], "source": ["mask", 0], "x": 16, "y": 16, "operation": "add"},
    }
    prompt["zero"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 48, "height": 48}}
    prompt["cond"] = {
        "class_type": "InpaintModelConditioning",
        "inputs": {
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "vae": ["ckpt", 2],
            "pixels": ["load", 0],
            "mask": ["big", 0],
            "noise_mask": True,
        },
    }
    prompt["ks"] = sampler(["cond", 2], ["cond", 0], ["cond", 1])
    prompt["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}}
    prompt["paste"] = {
        "class_type": "ImageCompositeMasked",
        "inputs": {
            "destination": ["load", 0],
            "source": ["dec", 0],
            "x": 0,
            "y": 0,
            "resize_source": False,
            "mask": ["big", 0],
        },
    }
    prompt["save"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["paste", 0], "filename_prefix": "inpaint"},
    }
    image = saved(run(executor, prompt), "save")[0]
    result = np.asarray(PILImage.open(sd_folders.output / image["filename"]))
    original = np.asarray(PILImage.open(sd_folders.input / "photo.png"))
    assert np.array_equal(result[:8], original[:8])  # outside the mask the photo is pasted back untouched


def test_noisy_latent_composition(executor: Executor, sd_folders: Folders) -> None:
    prompt = base(sd_folders)
    prompt["bg_latent"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 64, "height": 64, "batch_size": 1},
    }
    prompt["fg_latent"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 32, "height": 32, "batch_size": 1},
    }
    for name, latent in (("bg", "bg_latent"), ("fg", "fg_latent")):
        prompt[name] = {
            "class_type": "KSamplerAdvanced",
            "inputs": {
                "add_noise": "enable",
                "noise_seed": 1,
                "steps": 4,
                "cfg": 5.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "start_at_step": 0,
                "end_at_step": 2,
                "return_with_leftover_noise": "enable",
                "model": ["ckpt", 0],
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": [latent, 0],
            },
        }
    prompt["comp"] = {
        "class_type": "LatentComposite",
        "inputs": {"samples_to": ["bg", 0], "samples_from": ["fg", 0], "x": 16, "y": 16, "feather": 8},
    }
    prompt["finish"] = dict(prompt["bg"], inputs={**prompt["bg"]["inputs"], "latent_image": ["comp", 0]})
    prompt["finish"]["inputs"].update(
        {
            "add_noise": "disable",
            "start_at_step": 2,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        }
    )
    prompt["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["finish", 0], "vae": ["ckpt", 2]}}
    prompt["save"] = {"class_type": "PreviewImage", "inputs": {"images": ["dec", 0]}}
    assert len(saved(run(executor, prompt), "save")) == 1


def test_area_composition_with_strength_and_timestep_range(executor: Executor, sd_folders: Folders) -> None:
    prompt = base(sd_folders)
    prompt["left"] = {
        "class_type": "ConditioningSetArea",
        "inputs": {"conditioning": ["pos", 0], "width": 64, "height": 128, "x": 0, "y": 0, "strength": 1.0},
    }
    prompt["right"] = {
        "class_type": "ConditioningSetAreaPercentage",
        "inputs": {
            "conditioning": ["neg", 0],
            "width": 0.5,
            "height": 1.0,
            "x": 0.5,
            "y": 0.0,
            "strength": 1.0,
        },
    }
    prompt["strong"] = {
        "class_type": "ConditioningSetAreaStrength",
        "inputs": {"conditioning": ["right", 0], "strength": 2.0},
    }
    prompt["late"] = {
        "class_type": "ConditioningSetTimestepRange",
        "inputs": {"conditioning": ["strong", 0], "start": 0.3, "end": 1.0},
    }
    prompt["both"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["left", 0], "conditioning_2": ["late", 0]},
    }
    prompt["latent"] = {
        "class_type": "EmptyLatentImage",
        "inputs": {"width": 128, "height": 128, "batch_size": 1},
    }
    prompt["ks"] = sampler(["latent", 0], ["both", 0], ["neg", 0])
    prompt["dec"] = {"class_type": "VAEDecode", "inputs": {"samples": ["ks", 0], "vae": ["ckpt", 2]}}
    prompt["save"] = {"class_type": "PreviewImage", "inputs": {"images": ["dec", 0]}}
    assert len(saved(run(executor, prompt), "save")) == 1


def ui_node(
    node_id: int, node_type: str, widgets: list[Any], inputs: list[Any], outputs: list[Any]
) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": node_type,
        "pos": [0, 0],
        "size": [200, 60],
        "flags": {},
        "order": node_id,
        "mode": 0,
        "inputs": inputs,
        "outputs": outputs,
        "properties": {},
        "widgets_values": widgets,
    }


def test_ui_workflow_with_core_nodes_converts_and_runs(executor: Executor, loom_folders: Folders) -> None:
    PILImage.new("RGB", (24, 24), (200, 30, 30)).save(loom_folders.input / "red.png")
    image_out = {"name": "IMAGE", "type": "IMAGE", "links": [1]}
    nodes = [
        ui_node(
            1,
            "LoadImage",
            ["red.png", "image"],
            [],
            [image_out, {"name": "MASK", "type": "MASK", "links": []}],
        ),
        ui_node(
            2,
            "ImagePadForOutpaint",
            [8, 0, 8, 0, 4],
            [{"name": "image", "type": "IMAGE", "link": 1}],
            [
                {"name": "IMAGE", "type": "IMAGE", "links": [2]},
                {"name": "MASK", "type": "MASK", "links": [3]},
            ],
        ),
        ui_node(
            3,
            "ImageBlur",
            [2, 1.0],
            [{"name": "image", "type": "IMAGE", "link": 2}],
            [{"name": "IMAGE", "type": "IMAGE", "links": [4]}],
        ),
        ui_node(
            4,
            "GrowMask",
            [2, True],
            [{"name": "mask", "type": "MASK", "link": 3}],
            [{"name": "MASK", "type": "MASK", "links": [5]}],
        ),
        ui_node(
            5,
            "ImageCompositeMasked",
            [0, 0, False],
            [
                {"name": "destination", "type": "IMAGE", "link": 4},
                {"name": "source", "type": "IMAGE", "link": 6},
                {"name": "mask", "type": "MASK", "link": 5},
            ],
            [{"name": "IMAGE", "type": "IMAGE", "links": [7]}],
        ),
        ui_node(
            6, "EmptyImage", [40, 24, 1, 0x00FF00], [], [{"name": "IMAGE", "type": "IMAGE", "links": [6]}]
        ),
        ui_node(7, "SaveImage", ["ui_core"], [{"name": "images", "type": "IMAGE", "link": 7}], []),
    ]
    links = [
        [1, 1, 0, 2, 0, "IMAGE"],
        [2, 2, 0, 3, 0, "IMAGE"],
        [3, 2, 1, 4, 0, "MASK"],
        [4, 3, 0, 5, 0, "IMAGE"],
        [5, 4, 0, 5, 2, "MASK"],
        [6, 6, 0, 5, 1, "IMAGE"],
        [7, 5, 0, 7, 0, "IMAGE"],
    ]
    workflow = {
        "last_node_id": 7,
        "last_link_id": 7,
        "nodes": nodes,
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }
    prompt = ui_to_api(workflow, executor.registry)
    assert prompt["2"]["inputs"] == {
        "image": ["1", 0],
        "left": 8,
        "top": 0,
        "right": 8,
        "bottom": 0,
        "feathering": 4,
    }
    assert prompt["5"]["inputs"]["resize_source"] is False and prompt["6"]["inputs"]["color"] == 0x00FF00
    result = run(executor, prompt)
    pixels = np.asarray(PILImage.open(loom_folders.output / result.outputs["7"]["images"][0]["filename"]))
    assert pixels.shape == (24, 40, 3)
    assert pixels[12, 0].tolist() == [0, 255, 0] and pixels[12, 20, 0] > 150  # green padding, red centre


def test_ui_load_image_mask_skips_the_upload_widget(executor: Executor, loom_folders: Folders) -> None:
    PILImage.new("RGB", (4, 2), (255, 0, 0)).save(loom_folders.input / "m.png")
    nodes = [
        ui_node(
            1,
            "LoadImageMask",
            ["m.png", "red", "image"],
            [],
            [{"name": "MASK", "type": "MASK", "links": [1]}],
        ),
        ui_node(2, "PreviewAny", [], [{"name": "source", "type": "*", "link": 1}], []),
    ]
    workflow = {"nodes": nodes, "links": [[1, 1, 0, 2, 0, "MASK"]], "version": 0.4}
    prompt = ui_to_api(workflow, executor.registry)
    assert prompt["1"]["inputs"] == {"image": "m.png", "channel": "red"}
    assert run(executor, prompt).outputs["2"]["text"][0].startswith("tensor([[[1., 1., 1., 1.]")
