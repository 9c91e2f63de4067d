"""Skip-layer guidance on the flow transformers (SD3 joint blocks; Flux and Chroma double and single
blocks), through ComfyUI's "dit" block replacements; CFGNorm; T5TokenizerOptions on Chroma's T5."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures import flux_workflow, sd3_workflow, write_flux_files, write_sd3_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow_patch_models")
    write_sd3_files(root)
    write_flux_files(root)
    return root


@pytest.fixture
def folders(loom_folders: Folders, models: Path) -> Folders:
    loom_folders.models = Folders.under(models.parent, models_base=models).models
    return loom_folders


def _sd3(executor: Executor, folders: Folders, patch: dict[str, Any] | None) -> np.ndarray:
    prompt = sd3_workflow(seed=4)
    if patch is not None:
        prompt["20"] = {**patch, "inputs": {**patch["inputs"], "model": ["4", 0]}}
        prompt["9"]["inputs"]["model"] = ["20", 0]
    return image_of(folders, run(executor, prompt), "11")


def test_skip_layer_guidance_sd3_changes_only_with_existing_blocks(
    executor: Executor, folders: Folders
) -> None:
    plain = _sd3(executor, folders, None)
    slg = {
        "class_type": "SkipLayerGuidanceSD3",
        "inputs": {"layers": "1", "scale": 3.0, "start_percent": 0.0, "end_percent": 1.0},
    }
    guided = _sd3(executor, folders, slg)
    absent = _sd3(executor, folders, {**slg, "inputs": {**slg["inputs"], "layers": "7, 8, 9"}})
    again = _sd3(executor, folders, None)
    assert not np.array_equal(plain, guided) and np.isfinite(guided).all()
    # The tiny model has blocks 0 and 1 only: nothing is skipped. The guidance term is the cond prediction
    # run alone minus the one batched with uncond, which float rounding can leave off by an 8-bit level.
    assert np.abs(plain.astype(int) - absent.astype(int)).max() <= 1
    assert np.array_equal(plain, again)  # the blocks' forward is restored after each call


@pytest.mark.parametrize(("double", "single"), [("0", ""), ("", "0")])
def test_skip_layer_guidance_dit_on_flux_blocks(
    executor: Executor, folders: Folders, double: str, single: str
) -> None:
    prompt = flux_workflow(seed=3)
    plain = image_of(folders, run(executor, prompt), "9")
    prompt["40"] = {
        "class_type": "SkipLayerGuidanceDiT",
        "inputs": {
            "model": ["12", 0],
            "double_layers": double,
            "single_layers": single,
            "scale": 3.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "rescaling_scale": 0.5,
        },
    }
    prompt["31"]["inputs"]["model"] = ["40", 0]
    guided = image_of(folders, run(executor, prompt), "9")
    assert np.isfinite(guided).all() and not np.array_equal(plain, guided)


def test_simple_variant_and_cfg_norm(executor: Executor, folders: Folders) -> None:
    plain = _sd3(executor, folders, None)
    simple = {
        "class_type": "SkipLayerGuidanceDiTSimple",
        "inputs": {"double_layers": "0", "single_layers": "", "start_percent": 0.0, "end_percent": 1.0},
    }
    norm = {"class_type": "CFGNorm", "inputs": {"strength": 1.0}}
    for patch in (simple, norm):
        out = _sd3(executor, folders, patch)
        assert np.isfinite(out).all() and not np.array_equal(plain, out)
