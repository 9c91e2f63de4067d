"""Same eps network, same sigmas: Loom's samplers against diffusers' schedulers (tolerance 1e-4)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from engine.sampling import ModelSampling, calculate_sigmas, denoiser, get_sampler

from .conftest import toy_eps

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}
SHAPE = (1, 4, 4, 4)
STEPS = 8


def _noise(seed: int = 0) -> Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


def _run_k_style(scheduler, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """diffusers' loop for the k-diffusion-style schedulers (x in sigma space, scaled model input)."""
    for t in scheduler.timesteps:
        eps = toy_eps(scheduler.scale_model_input(x, t), t)
        extra = {} if generator is None else {"generator": generator}
        x = scheduler.step(eps, t, x, **extra).prev_sample
    return x


@pytest.mark.parametrize("karras", [False, True])
def test_euler_matches_euler_discrete(model_sampling: ModelSampling, karras: bool) -> None:
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(**SD_BETAS, use_karras_sigmas=karras)
    scheduler.set_timesteps(STEPS)
    sigmas = scheduler.sigmas.float()
    if karras:
        torch.testing.assert_close(
            calculate_sigmas(model_sampling, "karras", STEPS), sigmas, rtol=1e-4, atol=1e-6
        )
    x = _noise() * sigmas[0]
    ours = get_sampler("euler")(denoiser(toy_eps, model_sampling), x, sigmas)
    torch.testing.assert_close(ours, _run_k_style(scheduler, x), rtol=1e-4, atol=1e-4)


def test_euler_ancestral_matches_with_the_same_noise(model_sampling: ModelSampling) -> None:
    from diffusers import EulerAncestralDiscreteScheduler

    scheduler = EulerAncestralDiscreteScheduler(**SD_BETAS)
    scheduler.set_timesteps(STEPS)
    sigmas = scheduler.sigmas.float()
    x = _noise() * sigmas[0]
    ours_gen = torch.Generator().manual_seed(7)
    ours = get_sampler("euler_ancestral")(
        denoiser(toy_eps, model_sampling),
        x,
        sigmas,
        noise_sampler=lambda s, t: torch.randn(SHAPE, generator=ours_gen),
    )
    theirs = _run_k_style(scheduler, x, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_heun_matches_heun_discrete(model_sampling: ModelSampling) -> None:
    from diffusers import HeunDiscreteScheduler

    scheduler = HeunDiscreteScheduler(**SD_BETAS, use_karras_sigmas=True)
    scheduler.set_timesteps(STEPS)
    sigmas = torch.cat([scheduler.sigmas[0::2], scheduler.sigmas.new_zeros(1)]).float()
    torch.testing.assert_close(
        calculate_sigmas(model_sampling, "karras", STEPS), sigmas, rtol=1e-4, atol=1e-6
    )
    x = _noise() * sigmas[0]
    ours = get_sampler("heun")(denoiser(toy_eps, model_sampling), x, sigmas)
    torch.testing.assert_close(ours, _run_k_style(scheduler, x), rtol=1e-4, atol=1e-4)


def _run_vp_style(scheduler, x_vp: Tensor) -> Tensor:
    """diffusers' loop for VP-space solvers (DPM-Solver++, DDIM): unscaled input is x / sqrt(1 + sigma^2)."""
    for t in scheduler.timesteps:
        x_vp = scheduler.step(toy_eps(x_vp, t), t, x_vp).prev_sample
    return x_vp


def test_dpmpp_2m_matches_dpmsolver_multistep(model_sampling: ModelSampling) -> None:
    from diffusers import DPMSolverMultistepScheduler

    scheduler = DPMSolverMultistepScheduler(
        **SD_BETAS, algorithm_type="dpmsolver++", solver_order=2, use_karras_sigmas=True
    )
    scheduler.set_timesteps(STEPS)
    sigmas = scheduler.sigmas.float()
    assert sigmas[-1] == 0  # final step to sigma 0 is first order in both (lower_order_final)
    torch.testing.assert_close(
        calculate_sigmas(model_sampling, "karras", STEPS), sigmas, rtol=1e-4, atol=1e-6
    )
    x = _noise() * sigmas[0]
    ours = get_sampler("dpmpp_2m")(denoiser(toy_eps, model_sampling), x, sigmas)
    theirs = _run_vp_style(scheduler, x / (1 + sigmas[0] ** 2) ** 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_ddim_is_comfyuis_euler_and_matches_ddim_scheduler(model_sampling: ModelSampling) -> None:
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(**SD_BETAS, set_alpha_to_one=True, clip_sample=False)
    scheduler.set_timesteps(STEPS)
    sigmas = torch.cat([model_sampling.sigmas[scheduler.timesteps], torch.zeros(1)])
    x = _noise() * sigmas[0]
    ours = get_sampler("ddim")(denoiser(toy_eps, model_sampling), x, sigmas)
    theirs = _run_vp_style(scheduler, x / (1 + sigmas[0] ** 2) ** 0.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)
