"""A pack that patches MODEL through ComfyUI's API, run end to end on tiny checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.custom_nodes import load_pack
from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import image_of, run

PACK = Path(__file__).parent / "model_patch_pack"


@pytest.fixture
def pack_executor(registry: NodeRegistry, sd_folders: Folders) -> Executor:
    status = load_pack(registry, PACK)
    assert status.status == "loaded", status.error
    assert len(status.nodes) == 7
    return Executor(registry)


def patched(ckpt: str, patch: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """text_to_image with a model patch node (id 40) between the loader and KSampler."""
    prompt = text_to_image(ckpt, **kw)
    patch["inputs"]["model"] = ["4", 0]
    prompt["40"] = patch
    prompt["3"]["inputs"]["model"] = ["40", 0]
    return prompt


def pixels(executor: Executor, folders: Folders, prompt: dict[str, Any]) -> np.ndarray:
    return image_of(folders, run(executor, prompt)).astype(int)


def test_pack_ksampler_through_comfy_sample_equals_ksampler(
    pack_executor: Executor, sd_folders: Folders
) -> None:
    prompt = text_to_image("tiny_sd1.safetensors", sampler="euler_ancestral", scheduler="karras")
    expected = pixels(pack_executor, sd_folders, prompt)
    prompt["3"]["class_type"] = "PackKSampler"
    del prompt["3"]["inputs"]["denoise"]
    assert np.array_equal(pixels(pack_executor, sd_folders, prompt), expected)


def test_pack_sampler_function_and_sigmas_through_sampler_custom(
    pack_executor: Executor, sd_folders: Folders
) -> None:
    prompt = text_to_image("tiny_sdxl.safetensors")
    expected = pixels(pack_executor, sd_folders, prompt)
    prompt["41"] = {"class_type": "PackEulerSampler", "inputs": {}}
    prompt["42"] = {
        "class_type": "PackSigmas",
        "inputs": {"model": ["4", 0], "scheduler": "normal", "steps": 3},
    }
    prompt["3"] = {
        "class_type": "SamplerCustom",
        "inputs": {
            "model": ["4", 0],
            "add_noise": True,
            "noise_seed": 1,
            "cfg": 7.0,
            "positive": ["6", 0],
            "negative": ["7", 0],
            "sampler": ["41", 0],
            "sigmas": ["42", 0],
            "latent_image": ["5", 0],
        },
    }
    assert np.abs(pixels(pack_executor, sd_folders, prompt) - expected).max() <= 1


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_neutral_patches_keep_the_image_and_real_ones_change_it(
    pack_executor: Executor, sd_folders: Folders, family: str
) -> None:
    ckpt = f"tiny_{family}.safetensors"
    block = ("input", 1) if family == "sd1" else ("input", 3)
    base = pixels(pack_executor, sd_folders, text_to_image(ckpt))

    def run_patch(class_type: str, **inputs: Any) -> np.ndarray:
        return pixels(pack_executor, sd_folders, patched(ckpt, {"class_type": class_type, "inputs": inputs}))

    assert np.abs(run_patch("PatchRescaleCFG", multiplier=0.0) - base).max() <= 1
    assert np.array_equal(run_patch("PatchFreeULike", b=1.0, s=1.0), base)
    assert np.array_equal(
        run_patch("PatchAttentionReplace", block=block[0], number=block[1], context_scale=1.0), base
    )
    assert not np.array_equal(run_patch("PatchRescaleCFG", multiplier=1.0), base)
    assert not np.array_equal(run_patch("PatchFreeULike", b=1.3, s=0.5), base)
    assert not np.array_equal(
        run_patch("PatchAttentionReplace", block=block[0], number=block[1], context_scale=0.0), base
    )
    # The loader's MODEL is untouched by the pack's clones.
    assert np.array_equal(pixels(pack_executor, sd_folders, text_to_image(ckpt)), base)


def test_pack_reads_model_facts(pack_executor: Executor, sd_folders: Folders) -> None:
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sdxl.safetensors"}},
        "1": {"class_type": "ModelFacts", "inputs": {"model": ["4", 0]}},
    }
    result = run(pack_executor, prompt)
    assert result.status == "success", result.error
    assert result.outputs["1"]["text"] == ["SDXL EPS 14.615 4 torch.float32 True"]
