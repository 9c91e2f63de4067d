"""Flux.1 end to end on tiny stand-ins in the reference (ComfyUI) layout: detection of dev and schnell,
conversion against diffusers, split loaders, the flux1-dev-fp8 style checkpoint, guidance, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures import flux_to_comfy, flux_workflow, tiny_flux_transformer, write_flux_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("flux_models")
    return root, write_flux_files(root)


@pytest.fixture
def flux_folders(loom_folders: Folders, flux_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(flux_models[0].parent, models_base=flux_models[0]).models
    return loom_folders


@pytest.mark.parametrize(("guidance", "variant"), [(True, "Flux.1 dev"), (False, "Flux.1 schnell")])
def test_detects_dev_and_schnell(guidance: bool, variant: str) -> None:
    from engine.models import flow_families

    state = flux_to_comfy(tiny_flux_transformer(guidance=guidance).state_dict(), 1, 1)
    for prefix in ("", "model.diffusion_model."):
        detected = flow_families.detect({prefix + k: tuple(v.shape) for k, v in state.items()})
        assert detected is not None and (detected.family, detected.prefix, detected.variant) == (
            "flux",
            prefix,
            variant,
        )


def test_loaded_transformer_matches_the_diffusers_original() -> None:
    from engine.models import flux

    model = tiny_flux_transformer(seed=5)
    loaded = flux.load_transformer(flux_to_comfy(model.state_dict(), 1, 1), "", torch.float32)
    tokens, context, pooled = torch.randn(1, 16, 64), torch.randn(1, 7, 192), torch.randn(1, 64)
    img_ids = torch.zeros(16, 3)
    img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    args = {
        "timestep": torch.tensor([0.7]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(7, 3),
        "guidance": torch.tensor([3.5]),
    }
    with torch.no_grad():
        expected = model(tokens, context, pooled, return_dict=False, **args)[0]
        actual = loaded(tokens, context, pooled, return_dict=False, **args)[0]
    assert torch.allclose(expected, actual, atol=1e-6)


def test_flux_default_sampling_follows_comfyui(flux_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_diffusion_model

    root, _ = flux_models
    dev = load_diffusion_model(root / "diffusion_models" / "flux1-dev.safetensors")
    schnell = load_diffusion_model(root / "unet" / "flux1-schnell.safetensors")
    assert (
        dev.get_model_object("model_sampling").shift == 1.15
        and schnell.get_model_object("model_sampling").shift == 1.0
    )
    assert (
        dev.latent.scale_factor == 0.3611 and dev.latent.shift_factor == 0.1159 and dev.latent.channels == 16
    )


def test_text_to_image_split_files_seeded_and_guided(executor: Executor, flux_folders: Folders) -> None:
    first = image_of(flux_folders, run(executor, flux_workflow(seed=3)), "9")
    assert first.shape == (64, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(flux_folders, run(executor, flux_workflow(seed=3)), "9")
    other_guidance = image_of(flux_folders, run(executor, flux_workflow(seed=3, guidance=1.0)), "9")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_guidance)  # FluxGuidance reaches the guidance embedding


def test_schnell_ignores_guidance_and_model_sampling_flux_runs(
    executor: Executor, flux_folders: Folders
) -> None:
    prompt = flux_workflow(seed=2, unet="flux1-schnell.safetensors")
    prompt["40"] = {
        "class_type": "ModelSamplingFlux",
        "inputs": {"model": ["12", 0], "max_shift": 1.15, "base_shift": 0.5, "width": 64, "height": 64},
    }
    prompt["31"]["inputs"]["model"] = ["40", 0]
    a = image_of(flux_folders, run(executor, prompt), "9")
    prompt["35"]["inputs"]["guidance"] = 9.0
    b = image_of(flux_folders, run(executor, prompt), "9")
    assert a.std() > 0 and np.array_equal(a, b)


def test_fp8_checkpoint_loads_fp8_and_runs(executor: Executor, flux_folders: Folders) -> None:
    from engine import folders
    from engine.diffusion import handles

    loaded = handles.load(folders.current().model_path("checkpoints", "flux1-dev-fp8.safetensors"))
    assert loaded.model.unet.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert loaded.clip is not None and loaded.clip.roles == ("clip_l", "t5xxl") and loaded.vae is not None
    pixels = image_of(flux_folders, run(executor, flux_workflow(seed=3, loader="checkpoint")), "9")
    assert pixels.std() > 0


def test_dev_example_graph_with_custom_sampling_nodes(executor: Executor, flux_folders: Folders) -> None:
    """ComfyUI_examples' flux_dev_example graph: ModelSamplingFlux, FluxGuidance, BasicGuider,
    KSamplerSelect, BasicScheduler, RandomNoise and SamplerCustomAdvanced; its seed and sampler change the
    image, and with euler/simple it gives KSampler's image at cfg 1 (ComfyUI's equivalence)."""
    prompt = flux_workflow(seed=3)
    del prompt["31"], prompt["33"]
    prompt |= {
        "30": {
            "class_type": "ModelSamplingFlux",
            "inputs": {"model": ["12", 0], "max_shift": 1.15, "base_shift": 0.5, "width": 64, "height": 64},
        },
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["30", 0], "conditioning": ["35", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["30", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0},
        },
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 3}},
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
    }
    prompt["8"]["inputs"]["samples"] = ["13", 0]
    first = image_of(flux_folders, run(executor, prompt), "9")
    assert first.shape == (64, 64, 3) and first.std() > 0
    prompt["25"]["inputs"]["noise_seed"] = 4
    other_seed = image_of(flux_folders, run(executor, prompt), "9")
    prompt["25"]["inputs"]["noise_seed"] = 3
    prompt["16"]["inputs"]["sampler_name"] = "dpmpp_2m_sde"  # a flow SDE sampler on the Brownian tree
    sde = image_of(flux_folders, run(executor, prompt), "9")
    assert np.isfinite(sde).all() and not np.array_equal(first, other_seed)
    assert not np.array_equal(first, sde)
    reference = flux_workflow(seed=3)
    reference["40"] = prompt["30"]
    reference["31"]["inputs"]["model"] = ["40", 0]
    assert np.array_equal(first, image_of(flux_folders, run(executor, reference), "9"))


def test_clip_text_encode_flux(executor: Executor, flux_folders: Folders) -> None:
    prompt = flux_workflow(seed=3)
    prompt["6"] = {
        "class_type": "CLIPTextEncodeFlux",
        "inputs": {"clip": ["11", 0], "clip_l": "fennec", "t5xxl": "a fennec in snow", "guidance": 3.5},
    }
    prompt["35"]["inputs"]["conditioning"] = ["6", 0]
    pixels = image_of(flux_folders, run(executor, prompt), "9")
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_wrong_clip_type_is_named(executor: Executor, flux_folders: Folders) -> None:
    from engine.graph import validate_prompt

    prompt = flux_workflow()
    prompt["11"]["inputs"]["type"] = "hunyuan_video"
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok
    result = executor.execute(checked.prompt, "p", checked.outputs)
    assert result.status == "error" and "hunyuan_video" in str(result.error)
