"""Guider nodes and SamplerCustom(Advanced) on tiny checkpoints, against KSampler."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from tests.nodes import custom_sampling_adapters
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture
def custom_executor(registry: NodeRegistry, sd_folders: Folders) -> Executor:
    registry.register_module(custom_sampling_adapters)
    return Executor(registry)


def advanced(ckpt: str, guider: dict[str, Any], sampler: str = "euler", seed: int = 1) -> dict[str, Any]:
    """text_to_image's graph with KSampler (node 3) replaced by SamplerCustomAdvanced."""
    prompt = text_to_image(ckpt, seed=seed, sampler=sampler)
    prompt["20"] = guider
    prompt["21"] = {"class_type": "TestSamplerSelect", "inputs": {"sampler_name": sampler}}
    prompt["22"] = {
        "class_type": "TestBasicScheduler",
        "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 3, "sampler_name": sampler},
    }
    prompt["23"] = {"class_type": "TestRandomNoise", "inputs": {"noise_seed": seed}}
    prompt["3"] = {
        "class_type": "SamplerCustomAdvanced",
        "inputs": {
            "noise": ["23", 0],
            "guider": ["20", 0],
            "sampler": ["21", 0],
            "sigmas": ["22", 0],
            "latent_image": ["5", 0],
        },
    }
    return prompt


def cfg_guider(cfg: float = 7.0) -> dict[str, Any]:
    inputs = {"model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "cfg": cfg}
    return {"class_type": "CFGGuider", "inputs": inputs}


@pytest.mark.parametrize(
    ("family", "sampler"), [("sd1", "euler"), ("sdxl", "euler_ancestral"), ("sd1", "dpmpp_2m")]
)
def test_sampler_custom_advanced_with_cfg_guider_equals_ksampler(
    custom_executor: Executor, sd_folders: Folders, family: str, sampler: str
) -> None:
    ckpt = f"tiny_{family}.safetensors"
    expected = image_of(sd_folders, run(custom_executor, text_to_image(ckpt, sampler=sampler)))
    got = image_of(sd_folders, run(custom_executor, advanced(ckpt, cfg_guider(), sampler)))
    assert np.array_equal(got, expected)


def test_sampler_custom_equals_ksampler(custom_executor: Executor, sd_folders: Folders) -> None:
    ckpt = "tiny_sd1.safetensors"
    expected = image_of(sd_folders, run(custom_executor, text_to_image(ckpt)))
    prompt = advanced(ckpt, cfg_guider())
    prompt["3"] = {
        "class_type": "SamplerCustom",
        "inputs": {
            "model": ["4", 0],
            "add_noise": True,
            "noise_seed": 1,
            "cfg": 7.0,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "sampler": ["21", 0],
            "sigmas": ["22", 0],
            "latent_image": ["5", 0],
        },
    }
    assert np.array_equal(image_of(sd_folders, run(custom_executor, prompt)), expected)


def test_denoised_output_is_the_last_prediction(custom_executor: Executor, sd_folders: Folders) -> None:
    prompt = advanced("tiny_sd1.safetensors", cfg_guider())
    prompt["30"] = {"class_type": "VAEDecode", "inputs": {"samples": ["3", 1], "vae": ["4", 2]}}
    prompt["31"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "denoised", "images": ["30", 0]}}
    result = run(custom_executor, prompt)
    # Euler's last step goes to sigma 0, where x is the last denoised prediction.
    assert (
        np.abs(
            image_of(sd_folders, result, "31").astype(int) - image_of(sd_folders, result).astype(int)
        ).max()
        <= 1
    )


def test_basic_guider_equals_cfg_one(custom_executor: Executor, sd_folders: Folders) -> None:
    ckpt = "tiny_sdxl.safetensors"
    basic = {"class_type": "BasicGuider", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}}
    a = image_of(sd_folders, run(custom_executor, advanced(ckpt, basic)))
    b = image_of(sd_folders, run(custom_executor, advanced(ckpt, cfg_guider(1.0))))
    assert np.array_equal(a, b)


def test_dual_cfg_with_equal_conds_is_cfg_against_the_negative(
    custom_executor: Executor, sd_folders: Folders
) -> None:
    ckpt = "tiny_sd1.safetensors"
    dual = {
        "class_type": "DualCFGGuider",
        "inputs": {
            "model": ["4", 0],
            "cond1": ["6", 0],
            "cond2": ["6", 0],
            "negative": ["7", 0],
            "cfg_conds": 3.0,
            "cfg_cond2_negative": 7.0,
            "style": "regular",
        },
    }
    a = image_of(sd_folders, run(custom_executor, advanced(ckpt, dual)))
    b = image_of(sd_folders, run(custom_executor, advanced(ckpt, cfg_guider(7.0))))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_perp_neg_without_negative_scale_is_cfg_against_the_empty_prompt(
    custom_executor: Executor, sd_folders: Folders
) -> None:
    ckpt = "tiny_sd1.safetensors"
    prompt = advanced(ckpt, {})
    prompt["24"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "a blue square", "clip": ["4", 1]}}
    prompt["20"] = {
        "class_type": "PerpNegGuider",
        "inputs": {
            "model": ["4", 0],
            "positive": ["6", 0],
            "negative": ["24", 0],
            "empty_conditioning": ["7", 0],
            "cfg": 6.0,
            "neg_scale": 0.0,
        },
    }
    a = image_of(sd_folders, run(custom_executor, prompt))
    b = image_of(sd_folders, run(custom_executor, advanced(ckpt, cfg_guider(6.0))))
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    prompt["20"]["inputs"]["neg_scale"] = 2.0
    assert not np.array_equal(image_of(sd_folders, run(custom_executor, prompt)), a)


def test_guider_nodes_declare_comfy_inputs_and_outputs(registry: NodeRegistry) -> None:
    expected = {
        "CFGGuider": (["model", "positive", "negative", "cfg"], ["GUIDER"]),
        "DualCFGGuider": (
            ["model", "cond1", "cond2", "negative", "cfg_conds", "cfg_cond2_negative", "style"],
            ["GUIDER"],
        ),
        "BasicGuider": (["model", "conditioning"], ["GUIDER"]),
        "PerpNegGuider": (
            ["model", "positive", "negative", "empty_conditioning", "cfg", "neg_scale"],
            ["GUIDER"],
        ),
        "SamplerCustom": (
            [
                "model",
                "add_noise",
                "noise_seed",
                "cfg",
                "positive",
                "negative",
                "sampler",
                "sigmas",
                "latent_image",
            ],
            ["LATENT", "LATENT"],
        ),
        "SamplerCustomAdvanced": (
            ["noise", "guider", "sampler", "sigmas", "latent_image"],
            ["LATENT", "LATENT"],
        ),
    }
    for node, (inputs, outputs) in expected.items():
        spec = registry.get(node)
        assert [i.name for i in spec.inputs] == inputs, node
        assert [o.type for o in spec.outputs] == outputs, node
    assert [o.name for o in registry.get("SamplerCustomAdvanced").outputs] == ["output", "denoised_output"]
