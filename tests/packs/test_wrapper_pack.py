"""ComfyUI's OUTER_SAMPLE, SAMPLER_SAMPLE, PREDICT_NOISE, CALC_COND_BATCH and APPLY_MODEL wrappers
(and ON_PRE_RUN / ON_CLEANUP callbacks) are called by Loom's KSampler in ComfyUI's order and with
its arguments (tests/packs/wrapper_pack), on a tiny checkpoint."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from engine.custom_nodes import load_pack
from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from tests.nodes.sd_fixtures import text_to_image
from tests.packs.test_model_patch_pack import patched, pixels

PACK = Path(__file__).parent / "wrapper_pack"


@pytest.fixture
def executor(registry: NodeRegistry, sd_folders: Folders) -> Executor:
    status = load_pack(registry, PACK)
    assert status.status == "loaded", status.error
    return Executor(registry)


def calls(executor: Executor) -> dict[str, list[object]]:
    """The pack module's record of wrapper calls."""
    spec = executor.registry.get("PatchWrappers")
    assert spec is not None
    recorded: dict[str, list[object]] = sys.modules[spec.cls.__module__].CALLS  # type: ignore[attr-defined]
    return recorded


def test_wrappers_run_in_comfyui_order_and_change_nothing_when_neutral(
    executor: Executor, sd_folders: Folders
) -> None:
    plain = pixels(executor, sd_folders, text_to_image("tiny_sd1.safetensors", steps=3))
    for recorded in calls(executor).values():
        recorded.clear()
    prompt = patched(
        "tiny_sd1.safetensors", {"class_type": "PatchWrappers", "inputs": {"blend": 0.0}}, steps=3
    )
    assert np.array_equal(pixels(executor, sd_folders, prompt), plain)
    recorded = calls(executor)
    assert recorded["outer_sample"] == [((1, 4, 8, 8), 4, 1)]  # once per run: noise shape, sigmas, seed
    assert recorded["sampler_sample"] == [(4, 1, True)]
    assert len(recorded["predict_noise"]) == 3  # once per euler step
    assert recorded["calc_cond_batch"] == [2, 2, 2]  # cond and uncond together
    # cond and uncond share one batched UNet call per step; the wrapper sees the run's sigmas.
    assert len(recorded["apply_model"]) == 3 and all(has for _, has in recorded["apply_model"])
    assert [t for t, _ in recorded["apply_model"]] == recorded["predict_noise"]
    assert recorded["pre_run"] == [0] and recorded["cleanup"] == [3]  # before the first step, after the last


def test_apply_model_wrapper_added_during_outer_sample_changes_the_image(
    executor: Executor, sd_folders: Folders
) -> None:
    neutral = patched(
        "tiny_sd1.safetensors", {"class_type": "PatchWrappers", "inputs": {"blend": 0.0}}, steps=3
    )
    blended = patched(
        "tiny_sd1.safetensors", {"class_type": "PatchWrappers", "inputs": {"blend": 0.5}}, steps=3
    )
    assert not np.array_equal(pixels(executor, sd_folders, neutral), pixels(executor, sd_folders, blended))
    # The wrapper was added to this run's copy of model_options only: a later plain run is unchanged.
    assert np.array_equal(
        pixels(executor, sd_folders, text_to_image("tiny_sd1.safetensors", steps=3)),
        pixels(executor, sd_folders, neutral),
    )
