"""ComfyUI's DIFFUSION_MODEL wrapper kind runs around the UNet's forward in Loom's KSampler, with
ComfyUI's arguments (tests/packs/diffusion_model_pack), on a tiny checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.custom_nodes import load_pack
from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from tests.nodes.sd_fixtures import text_to_image
from tests.packs.test_model_patch_pack import patched, pixels

PACKS = Path(__file__).parent


@pytest.fixture
def executor(registry: NodeRegistry, sd_folders: Folders) -> Executor:
    for name in ("diffusion_model_pack", "wrapper_pack"):
        status = load_pack(registry, PACKS / name)
        assert status.status == "loaded", status.error
    return Executor(registry)


def recorded_calls(executor: Executor) -> list[dict[str, Any]]:
    spec = executor.registry.get("PatchDiffusionModel")
    assert spec is not None
    calls: list[dict[str, Any]] = sys.modules[spec.cls.__module__].CALLS  # type: ignore[attr-defined]
    return calls


def scaled(scale: float, **kw: Any) -> dict[str, Any]:
    patch = {"class_type": "PatchDiffusionModel", "inputs": {"scale": scale}}
    return patched("tiny_sd1.safetensors", patch, steps=3, **kw)


def test_wrapper_gets_comfyuis_unet_call_and_neutral_keeps_the_image(
    executor: Executor, sd_folders: Folders
) -> None:
    plain = pixels(executor, sd_folders, text_to_image("tiny_sd1.safetensors", steps=3))
    recorded_calls(executor).clear()
    assert np.array_equal(pixels(executor, sd_folders, scaled(1.0)), plain)
    calls = recorded_calls(executor)
    assert len(calls) == 3  # one batched UNet call (cond and uncond) per euler step
    for call in calls:
        # ComfyUI's UNetModel.forward(x, timesteps, context, y, control, transformer_options):
        # the scaled input, timesteps on the model's 0..999 scale, the CLIP context, no ADM input
        # for SD1, no control, and no further keyword arguments.
        assert call["x"] == {"shape": [2, 4, 8, 8], "dtype": "float32"}
        assert call["timesteps"] == {"shape": [2], "dtype": "float32"}
        assert call["context"]["shape"][:2] == [2, 77] and call["context"]["dtype"] == "float32"
        assert call["y"] is None and call["control"] is None and call["kwargs"] == []
        # original_shape is set inside the network's forward, after the wrappers (as in ComfyUI).
        assert call["transformer_options"] == ["cond_or_uncond", "sample_sigmas", "sigmas", "uuids"]
        assert call["has_class_obj"]
    first, last = calls[0]["timestep_range"], calls[-1]["timestep_range"]
    assert first[0] == first[1] and 900 < first[0] <= 999 and 0 <= last[0] < first[0]


def test_scaling_the_prediction_blends_denoised_towards_the_input(
    executor: Executor, sd_folders: Folders
) -> None:
    # eps * s gives denoised' = x - s * sigma * eps = (1 - s) * x + s * denoised: the same as the
    # wrapper pack's APPLY_MODEL wrapper blending denoised towards x by 1 - s.
    half = pixels(executor, sd_folders, scaled(0.5))
    blend = {"class_type": "PatchWrappers", "inputs": {"blend": 0.5}}
    blended = pixels(executor, sd_folders, patched("tiny_sd1.safetensors", blend, steps=3))
    plain = pixels(executor, sd_folders, text_to_image("tiny_sd1.safetensors", steps=3))
    assert np.abs(half - plain).max() > 10
    assert np.abs(half - blended).max() <= 1
