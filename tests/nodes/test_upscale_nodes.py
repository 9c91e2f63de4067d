"""UpscaleModelLoader and ImageUpscaleWithModel on random-weight stand-ins in real key layouts."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine.context import Context, Interrupted
from engine.executor import Executor
from engine.folders import PROJECT_ROOT, Folders
from engine.graph import validate_prompt
from engine.models.upscale import tiled_scale, tiled_steps, upscale
from engine.ui_workflow import ui_to_api
from tests.nodes.harness import call
from tests.nodes.test_workflow_families import ui_node
from tests.nodes.upscale_fixtures import (
    compact_layout,
    esrgan_new_layout,
    esrgan_old_layout,
    write_standin,
    write_swinir_standin,
)

LAYOUTS: dict[str, tuple[Callable[[Path], Path], str, int]] = {
    "esrgan_old.safetensors": (lambda p: write_standin(p, esrgan_old_layout()), "ESRGAN", 4),
    "realesrgan_new.safetensors": (lambda p: write_standin(p, esrgan_new_layout()), "ESRGAN", 4),
    "compact_x2.safetensors": (lambda p: write_standin(p, compact_layout(scale=2)), "RealESRGAN Compact", 2),
    "swinir_module_prefix.safetensors": (write_swinir_standin, "SwinIR", 2),
}


@pytest.fixture
def upscale_folders(loom_folders: Folders) -> Folders:
    folder = loom_folders.models["upscale_models"][0]
    for name, (write, _, _) in LAYOUTS.items():
        write(folder / name)
    (folder / "not_a_model.safetensors").write_bytes(b"")
    write_standin(folder / "lora_like.safetensors", {"lora_unet_down.lora_up.weight": (4, 4, 1, 1)})
    return loom_folders


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_each_layout_loads_detected_and_upscales_by_its_scale(
    executor: Executor, upscale_folders: Folders, name: str
) -> None:
    _, architecture, scale = LAYOUTS[name]
    (model,) = call(executor, "UpscaleModelLoader", model_name=name)
    assert model.architecture.name == architecture and model.scale == scale
    image = torch.rand(1, 20, 28, 3)
    (upscaled,) = call(executor, "ImageUpscaleWithModel", upscale_model=model, image=image)
    assert upscaled.shape == (1, 20 * scale, 28 * scale, 3)
    assert upscaled.min() >= 0.0 and upscaled.max() <= 1.0 and upscaled.std() > 0.01


def test_loader_lists_the_folder_and_names_an_unsupported_file(
    executor: Executor, upscale_folders: Folders
) -> None:
    spec = executor.registry.get("UpscaleModelLoader")
    assert spec is not None
    (model_name,) = spec.inputs
    assert model_name.choices is not None and "esrgan_old.safetensors" in model_name.choices()
    for bad in ("lora_like.safetensors", "not_a_model.safetensors"):
        checked = validate_prompt(
            executor.registry,
            {
                "1": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": bad}},
                "2": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
                "3": {
                    "class_type": "ImageUpscaleWithModel",
                    "inputs": {"upscale_model": ["1", 0], "image": ["4", 0]},
                },
                "4": {
                    "class_type": "EmptyImage",
                    "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0},
                },
            },
        )
        assert checked.ok, checked.node_errors
        result = executor.execute(checked.prompt, "bad", checked.outputs)
        assert result.status == "error" and bad in str(result.error)


def test_tiling_blends_to_the_exact_result_for_a_local_function() -> None:
    """With a function that has no border effects, tiling with feathered overlaps must be exact."""
    image = torch.rand(2, 3, 50, 70)

    def nearest_x3(tile: torch.Tensor) -> torch.Tensor:
        return tile.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3)

    calls = []
    tiled = tiled_scale(image, nearest_x3, tile=16, overlap=4, scale=3, on_tile=lambda: calls.append(1))
    torch.testing.assert_close(tiled, nearest_x3(image))
    assert len(calls) == 2 * tiled_steps(70, 50, 16, 4)


@pytest.mark.parametrize(
    "name", ["realesrgan_new.safetensors", "compact_x2.safetensors", "swinir_module_prefix.safetensors"]
)
def test_tiled_upscale_is_seamless(executor: Executor, upscale_folders: Folders, name: str) -> None:
    (model,) = call(executor, "UpscaleModelLoader", model_name=name)
    image = torch.rand(1, 48, 64, 3, generator=torch.Generator().manual_seed(1))
    whole = upscale(model, image)  # one 512 tile
    ticks: list[tuple[int, int]] = []
    tiled = upscale(
        model, image, tile=32, overlap=16, progress=lambda done, total: ticks.append((done, total))
    )
    psnr = 10 * torch.log10(1 / ((tiled - whole) ** 2).mean())
    assert psnr > 40, psnr
    assert (tiled - whole).abs().max() < 0.1
    assert ticks[-1] == (tiled_steps(64, 48, 32, 16),) * 2 and len(ticks) > 1


def test_upscale_halves_the_tile_when_memory_runs_out() -> None:
    tiles: list[int] = []

    class Fussy(torch.nn.Module):
        scale, output_channels = 2, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            tiles.append(max(x.shape[2:]))
            if max(x.shape[2:]) > 200:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    out = upscale(Fussy(), torch.rand(1, 300, 300, 3))
    assert out.shape == (1, 600, 600, 3) and 512 not in tiles[1:] and max(tiles[1:]) == 256


def _ui_workflow() -> dict[str, Any]:
    def out(name: str, kind: str, links: list[int]) -> dict[str, Any]:
        return {"name": name, "type": kind, "links": links}

    def inp(name: str, kind: str, link: int) -> dict[str, Any]:
        return {"name": name, "type": kind, "link": link}

    nodes = [
        ui_node(
            1,
            "CheckpointLoaderSimple",
            ["loom_default.safetensors"],
            [],
            [out("MODEL", "MODEL", [1]), out("CLIP", "CLIP", [2, 3]), out("VAE", "VAE", [4])],
        ),
        ui_node(
            2,
            "CLIPTextEncode",
            ["a small red circle on the left"],
            [inp("clip", "CLIP", 2)],
            [out("CONDITIONING", "CONDITIONING", [5])],
        ),
        ui_node(
            3, "CLIPTextEncode", [""], [inp("clip", "CLIP", 3)], [out("CONDITIONING", "CONDITIONING", [6])]
        ),
        ui_node(4, "EmptyLatentImage", [64, 64, 1], [], [out("LATENT", "LATENT", [7])]),
        ui_node(
            5,
            "KSampler",
            [7, "fixed", 4, 6.0, "euler", "normal", 1.0],
            [
                inp("model", "MODEL", 1),
                inp("positive", "CONDITIONING", 5),
                inp("negative", "CONDITIONING", 6),
                inp("latent_image", "LATENT", 7),
            ],
            [out("LATENT", "LATENT", [8])],
        ),
        ui_node(
            6,
            "VAEDecode",
            [],
            [inp("samples", "LATENT", 8), inp("vae", "VAE", 4)],
            [out("IMAGE", "IMAGE", [9])],
        ),
        ui_node(
            7,
            "UpscaleModelLoader",
            ["realesrgan_new.safetensors"],
            [],
            [out("UPSCALE_MODEL", "UPSCALE_MODEL", [10])],
        ),
        ui_node(
            8,
            "ImageUpscaleWithModel",
            [],
            [inp("upscale_model", "UPSCALE_MODEL", 10), inp("image", "IMAGE", 9)],
            [out("IMAGE", "IMAGE", [11])],
        ),
        ui_node(9, "SaveImage", ["upscaled"], [inp("images", "IMAGE", 11)], []),
    ]
    links = [
        [1, 1, 0, 5, 0, "MODEL"], [2, 1, 1, 2, 0, "CLIP"], [3, 1, 1, 3, 0, "CLIP"], [4, 1, 2, 6, 1, "VAE"],
        [5, 2, 0, 5, 1, "CONDITIONING"], [6, 3, 0, 5, 2, "CONDITIONING"], [7, 4, 0, 5, 3, "LATENT"],
        [8, 5, 0, 6, 0, "LATENT"], [9, 6, 0, 8, 1, "IMAGE"], [10, 7, 0, 8, 0, "UPSCALE_MODEL"],
        [11, 8, 0, 9, 0, "IMAGE"],
    ]  # fmt: skip
    return {"last_node_id": 9, "last_link_id": 11, "nodes": nodes, "links": links, "version": 0.4}


def test_upscale_workflow_converts_validates_and_runs(executor: Executor, upscale_folders: Folders) -> None:
    """ComfyUI_examples' upscale-model workflow shape: txt2img on the shipped model, then ×4."""
    upscale_folders.models["checkpoints"] = [PROJECT_ROOT / "models" / "checkpoints"]
    prompt = ui_to_api(_ui_workflow(), executor.registry)
    assert prompt["8"]["inputs"] == {"upscale_model": ["7", 0], "image": ["6", 0]}
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "upscale", checked.outputs)
    assert result.status == "success", result.error
    saved = result.outputs["9"]["images"][0]["filename"]
    pixels = np.asarray(PILImage.open(upscale_folders.output / saved))
    assert pixels.shape == (256, 256, 3)


def test_node_definitions_match_comfyui(executor: Executor) -> None:
    loader = executor.registry.get("UpscaleModelLoader")
    apply = executor.registry.get("ImageUpscaleWithModel")
    assert loader is not None and apply is not None
    assert (loader.category, loader.display_name) == ("loaders", "Load Upscale Model")
    assert [o.type for o in loader.outputs] == ["UPSCALE_MODEL"]
    assert (apply.category, apply.display_name) == ("image/upscaling", "Upscale Image (using Model)")
    assert [i.name for i in apply.inputs] == ["upscale_model", "image"] and [
        o.type for o in apply.outputs
    ] == ["IMAGE"]


def test_an_interrupt_stops_the_upscale_between_tiles() -> None:
    calls: list[int] = []

    class Counting(torch.nn.Module):
        scale, output_channels = 2, 3

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")

    flag = threading.Event()
    events: list[dict[str, Any]] = []

    def emit(event: str, data: dict[str, Any]) -> None:
        events.append(data)
        flag.set()  # the user presses "cancel" while the first tile's progress is shown

    ctx = Context(node_id="7", prompt_id="p", emit=emit, interrupt_flag=flag)
    with pytest.raises(Interrupted):
        upscale(Counting(), torch.rand(1, 64, 64, 3), tile=24, overlap=4, progress=ctx.progress)
    assert events[0]["node"] == "7" and events[0]["max"] == tiled_steps(64, 64, 24, 4) == 9
    assert len(calls) == 2  # the tile in flight finishes; no further tile starts
