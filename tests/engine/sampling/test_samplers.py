"""Every sampler on every schedule with toy models whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor

from engine.sampling import (
    SAMPLER_NAMES,
    SCHEDULER_NAMES,
    ModelSampling,
    calculate_sigmas,
    get_sampler,
    sample,
)
from engine.sampling.samplers_karras import lms_coefficient

from .conftest import gaussian_denoiser

# Samplers that stop at the smallest nonzero sigma instead of 0, as in ComfyUI.
STOPS_AT_SIGMA_MIN = {"dpm_fast", "dpm_adaptive"}

PRIORITY = ["euler", "euler_ancestral", "heun", "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2m", "ddim"]
PRIORITY += ["dpmpp_2s_ancestral", "dpmpp_sde", "dpmpp_2m_sde", "dpmpp_3m_sde", "ddpm", "lcm", "heunpp2"]
PRIORITY += ["dpm_fast", "dpm_adaptive", "ipndm", "res_multistep"]


def test_priority_samplers_are_registered() -> None:
    assert set(PRIORITY) <= set(SAMPLER_NAMES)


@pytest.fixture(scope="module")
def schedules(model_sampling: ModelSampling) -> dict[str, Tensor]:
    return {name: calculate_sigmas(model_sampling, name, 4) for name in SCHEDULER_NAMES}


@pytest.mark.parametrize("sampler_name", SAMPLER_NAMES)
def test_every_sampler_runs_on_every_schedule(
    model_sampling: ModelSampling, schedules: dict[str, Tensor], sampler_name: str
) -> None:
    latent = torch.zeros(2, 3, 4, 4)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    model = gaussian_denoiser(0.5, 0.2)
    for scheduler_name, sigmas in schedules.items():
        out = sample(model, noise, latent, sigmas, sampler_name, model_sampling=model_sampling, seed=1)
        assert out.shape == latent.shape, scheduler_name
        assert torch.isfinite(out).all(), scheduler_name


@pytest.mark.parametrize("sampler_name", SAMPLER_NAMES)
def test_sampler_converges_to_the_only_data_point(model_sampling: ModelSampling, sampler_name: str) -> None:
    point = torch.tensor([0.25, -0.5, 1.0]).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)

    def model(x: Tensor, sigma: Tensor, **extra_args: object) -> Tensor:
        return point.clone()

    sigmas = calculate_sigmas(model_sampling, "karras", 6)
    x = torch.randn(point.shape, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    out = get_sampler(sampler_name)(model, x, sigmas, noise_sampler=lambda s, t: torch.randn_like(x))
    expected = point
    if sampler_name in STOPS_AT_SIGMA_MIN:  # the exact ODE solution at sigma_min
        expected = point + sigmas[-2] / sigmas[0] * (x - point)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


ODE_SAMPLERS = ["euler", "heun", "heunpp2", "dpm_2", "lms", "dpmpp_2m", "ipndm", "ipndm_v", "res_multistep"]
ODE_SAMPLERS += ["dpm_fast", "dpmpp_2m_sde", "dpmpp_3m_sde", "dpmpp_sde"]


def _ode_error(model_sampling: ModelSampling, sampler_name: str, steps: int) -> float:
    """Relative error against the exact probability-flow ODE solution for Gaussian data N(0.5, 0.2^2)."""
    mean, std = 0.5, 0.2
    sigmas = calculate_sigmas(model_sampling, "karras", steps)
    x = torch.randn(256, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    options = {"eta": 0.0} if "sde" in sampler_name else {}
    out = get_sampler(sampler_name)(gaussian_denoiser(mean, std), x, sigmas, **options)
    sigma_end = sigmas[-2] if sampler_name in STOPS_AT_SIGMA_MIN else sigmas[-1]
    scale = ((std**2 + sigma_end**2) / (std**2 + sigmas[0] ** 2)) ** 0.5
    exact = mean + scale * (x - mean)
    return float((out - exact).abs().max() / (exact - mean).abs().max())


@pytest.mark.parametrize("sampler_name", ODE_SAMPLERS)
def test_deterministic_samplers_converge_to_the_ode_solution(
    model_sampling: ModelSampling, sampler_name: str
) -> None:
    """With eta = 0 each sampler integrates the probability-flow ODE; more steps, smaller error."""
    coarse, fine = _ode_error(model_sampling, sampler_name, 10), _ode_error(model_sampling, sampler_name, 20)
    assert fine < 0.11
    assert fine < 0.6 * coarse


def test_lms_coefficients_reduce_to_adams_bashforth() -> None:
    ts = np.array([5.0, 4.0, 3.0, 2.0, 1.0])
    assert [lms_coefficient(4, ts, 3, j) for j in range(4)] == pytest.approx(
        [-55 / 24, 59 / 24, -37 / 24, 9 / 24]
    )
    assert [lms_coefficient(2, ts, 1, j) for j in range(2)] == pytest.approx([-3 / 2, 1 / 2])
    assert lms_coefficient(1, ts, 0, 0) == pytest.approx(-1.0)


def test_sampler_options_are_forwarded_and_checked(model_sampling: ModelSampling) -> None:
    sigmas = calculate_sigmas(model_sampling, "karras", 4)
    x = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    model = gaussian_denoiser(0.0, 1.0)
    euler = get_sampler("euler")
    deterministic = get_sampler("euler_ancestral")(model, x, sigmas, eta=0.0)
    torch.testing.assert_close(deterministic, euler(model, x, sigmas))
    with pytest.raises(TypeError):
        euler(model, x, sigmas, eta=0.5)
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("nope")
