"""Rectified-flow model sampling: ComfyUI's shift formulas; every sampler and scheduler on a flow model."""

from __future__ import annotations

import math

import pytest
import torch

from engine.sampling import SAMPLER_NAMES, SCHEDULER_NAMES, default_noise_sampler, sample, sigmas_for
from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow, ModelSamplingFlux, flux_shift
from engine.sampling.registry import get_sampler


def test_sd3_shift_follows_esser_et_al() -> None:
    sampling = ModelSamplingDiscreteFlow(shift=3.0)
    assert float(sampling.sigma_max) == pytest.approx(1.0)
    assert float(sampling.sigma_min) == pytest.approx(3 * 0.001 / (1 + 2 * 0.001))
    assert float(sampling.sigma(torch.tensor(500.0))) == pytest.approx(0.75)
    assert float(sampling.timestep(torch.tensor(0.75))) == pytest.approx(750.0)
    assert sampling.percent_to_sigma(0.5) == pytest.approx(0.75)
    assert (sampling.percent_to_sigma(0.0), sampling.percent_to_sigma(1.0)) == (1.0, 0.0)


def test_auraflow_multiplier_keeps_timestep_in_unit_range() -> None:
    sampling = ModelSamplingDiscreteFlow(shift=1.73, multiplier=1.0)
    assert float(sampling.timestep(torch.tensor(0.5))) == pytest.approx(0.5)
    assert float(sampling.sigma(torch.tensor(0.5))) == pytest.approx(1.73 * 0.5 / (1 + 0.73 * 0.5))


def test_flux_shift_is_linear_in_patches() -> None:
    assert flux_shift(1.15, 0.5, 1024, 1024) == pytest.approx(1.15)
    assert flux_shift(1.15, 0.5, 256, 256) == pytest.approx(0.5)
    sampling = ModelSamplingFlux(shift=1.15)
    t = 0.3
    assert float(sampling.sigma(torch.tensor(t))) == pytest.approx(
        math.exp(1.15) / (math.exp(1.15) + (1 / t - 1))
    )
    assert len(sampling.sigmas) == 10000


def test_const_parameterisation_round_trips() -> None:
    sampling = ModelSamplingDiscreteFlow(shift=3.0)
    x0, noise, sigma = torch.randn(2, 16, 4, 4), torch.randn(2, 16, 4, 4), torch.tensor([0.3, 0.8])
    x = sampling.noise_scaling(sigma, noise, x0)
    velocity = noise - x0
    assert torch.allclose(sampling.calculate_denoised(sigma, velocity, x), x0, atol=1e-6)
    assert torch.equal(sampling.calculate_input(sigma, x), x)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_every_scheduler_gives_decreasing_flow_sigmas(scheduler: str) -> None:
    for sampling in (ModelSamplingDiscreteFlow(shift=3.0), ModelSamplingFlux(shift=1.15)):
        sigmas = sigmas_for(sampling, scheduler, 8)
        assert sigmas[-1] == 0 and float(sigmas[0]) <= 1.0 + 1e-6
        assert bool((sigmas[:-1] >= sigmas[1:]).all())


# As in ComfyUI, these integrate down to the last non-zero sigma and stop there.
STOP_AT_SIGMA_MIN = {"dpm_fast", "dpm_adaptive"}


@pytest.mark.parametrize("sampler", SAMPLER_NAMES)
def test_every_sampler_reaches_the_data_point_of_a_perfect_flow_model(sampler: str) -> None:
    """A model whose x0 prediction is always the data point: every sampler must end there."""
    torch.manual_seed(0)
    target = torch.randn(1, 16, 4, 4)
    sampling = ModelSamplingDiscreteFlow(shift=3.0)

    def model(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        return target.expand_as(x)

    sigmas = sigmas_for(sampling, "simple", 6, sampler_name=sampler)
    noise = torch.randn(1, 16, 4, 4)
    out = sample(model, noise, torch.zeros_like(target), sigmas, sampler, model_sampling=sampling, seed=3)
    assert torch.isfinite(out).all()
    if sampler in STOP_AT_SIGMA_MIN:
        assert (out - target).abs().mean() < (noise - target).abs().mean()
    else:
        assert torch.allclose(out, target, atol=2e-3), (sampler, float((out - target).abs().max()))


def test_noise_adding_samplers_switch_to_flow_forms() -> None:
    flow = ModelSamplingDiscreteFlow(shift=3.0)
    for name in ("euler_ancestral", "dpm_2_ancestral", "dpmpp_2s_ancestral", "lcm"):
        assert get_sampler(name, flow) is not get_sampler(name)
        assert get_sampler(name, flow).__name__.endswith("_rf")
    assert get_sampler("dpmpp_2m_sde", flow).func.__name__ == "sample_dpmpp_2m_sde_rf"  # type: ignore[attr-defined]
    assert get_sampler("euler", flow) is get_sampler("euler")


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde", "lcm"])
def test_comfy_sampler_objects_take_the_flow_forms_too(sampler: str) -> None:
    """A SAMPLER built through comfy.samplers (KSamplerSelect, packs) runs the same flow form as KSampler."""
    import importlib

    from engine import comfy_compat

    comfy_compat.install()
    samplers = importlib.import_module("comfy.samplers")
    sampling = ModelSamplingDiscreteFlow(shift=3.0)
    torch.manual_seed(1)
    noise, target = torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 4)

    def model(x: torch.Tensor, sigma: torch.Tensor, **_: object) -> torch.Tensor:
        return 0.5 * x + 0.5 * target  # depends on x, so different samplers give different paths

    sigmas = sigmas_for(sampling, "simple", 5)
    latent = torch.zeros_like(target)
    direct = sample(model, noise, latent, sigmas, sampler, model_sampling=sampling, seed=9)
    through = samplers.sampler_object(sampler).sample(
        model, noise, latent, sigmas, seed=9, model_sampling=sampling
    )
    assert torch.allclose(direct, through, atol=1e-6)
    start = sampling.noise_scaling(sigmas[0], noise, latent)
    ve_form = get_sampler(sampler)(model, start, sigmas, noise_sampler=default_noise_sampler(start, 9))
    assert not torch.allclose(sampling.inverse_noise_scaling(sigmas[-1], ve_form), through, atol=1e-3)
