"""The samplers added for ComfyUI 0.3.64's full KSampler list, run by KSampler and by SamplerCustom on
the tiny SD1 checkpoint: each runs, is seeded, equals its KSamplerSelect form, and the CFG++ ones
follow the guider's uncond prediction."""

from __future__ import annotations

import numpy as np
import pytest

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_cfg_pp_sa_solver_nodes import custom, select
from tests.nodes.test_model_patch_nodes import CKPT, close, differs, latent

NEW = [
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_2m_cfg_pp",
    "deis",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "seeds_2",
    "seeds_3",
]
TWINS = {
    "dpmpp_2m_cfg_pp": "dpmpp_2m",
    "res_multistep_cfg_pp": "res_multistep",
    "gradient_estimation_cfg_pp": "gradient_estimation",
}


@pytest.mark.parametrize("name", NEW)
def test_ksampler_and_sampler_custom_run_the_sampler(
    executor: Executor, sd_folders: Folders, name: str
) -> None:
    by_ksampler = latent(executor, sd_folders, text_to_image(CKPT, sampler=name))
    assert np.isfinite(by_ksampler).all()
    # SamplerCustom with KSamplerSelect and the same seed and schedule is the same sampling.
    assert close(latent(executor, sd_folders, custom(select(name))), by_ksampler)


@pytest.mark.parametrize("name", sorted(TWINS))
def test_cfg_pp_forms_use_the_uncond_prediction(executor: Executor, sd_folders: Folders, name: str) -> None:
    # With the negative prompt equal to the positive one, the uncond prediction is the guided one and
    # the CFG++ form is its plain sampler; with another negative prompt it is not.
    same, twin = (
        custom(select(name), negative="a red circle"),
        custom(select(TWINS[name]), negative="a red circle"),
    )
    assert close(latent(executor, sd_folders, same), latent(executor, sd_folders, twin))
    assert differs(
        latent(executor, sd_folders, custom(select(name), negative="blue")),
        latent(executor, sd_folders, custom(select(TWINS[name]), negative="blue")),
    )
