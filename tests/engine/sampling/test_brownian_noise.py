"""SDE samplers draw their noise from a seeded torchsde Brownian tree, as ComfyUI's do."""

from __future__ import annotations

import pytest
import torch
import torchsde
from torch import Tensor

from engine.sampling import ModelSampling, prepare_noise, sample, sigmas_for
from engine.sampling.noise import brownian_tree_noise_sampler

from .conftest import gaussian_denoiser

LATENT = torch.zeros(1, 4, 4, 4)
SDE_SAMPLERS = ["dpmpp_sde", "dpmpp_2m_sde", "dpmpp_2m_sde_heun", "dpmpp_3m_sde"]


def _run(model_sampling: ModelSampling, sampler: str, seed: int) -> Tensor:
    sigmas = sigmas_for(model_sampling, "karras", 5)
    noise = prepare_noise(LATENT, seed)
    model = gaussian_denoiser(0.3, 0.5)
    return sample(model, noise, LATENT, sigmas, sampler, model_sampling=model_sampling, seed=seed)


@pytest.mark.parametrize("sampler", SDE_SAMPLERS)
def test_sde_samplers_are_deterministic_per_seed(model_sampling: ModelSampling, sampler: str) -> None:
    first = _run(model_sampling, sampler, 11)
    assert torch.equal(first, _run(model_sampling, sampler, 11))
    assert not torch.allclose(first, _run(model_sampling, sampler, 12))


@pytest.mark.parametrize("sampler", SDE_SAMPLERS)
def test_gpu_names_equal_plain_names_on_the_cpu(model_sampling: ModelSampling, sampler: str) -> None:
    assert torch.equal(_run(model_sampling, sampler, 3), _run(model_sampling, f"{sampler}_gpu", 3))


def test_noise_is_the_seeded_tree_increment_over_the_interval() -> None:
    sigmas = torch.tensor([14.6, 3.0, 0.5, 0.03, 0.0])
    noise = brownian_tree_noise_sampler(LATENT, sigmas, seed=7)
    tree = torchsde.BrownianTree(torch.tensor(0.03), torch.zeros_like(LATENT), torch.tensor(14.6), entropy=7)
    expected = -tree(torch.tensor(0.5), torch.tensor(3.0)) / 2.5**0.5  # stepping down flips the sign
    assert torch.allclose(noise(torch.tensor(3.0), torch.tensor(0.5)), expected, atol=1e-6)


def test_tree_noise_is_consistent_across_sub_intervals() -> None:
    """Unlike i.i.d. draws, the increments of two halves add up to the whole interval's increment."""
    sigmas = torch.tensor([10.0, 1.0, 0.0])
    noise = brownian_tree_noise_sampler(LATENT, sigmas, seed=1)
    whole = noise(torch.tensor(10.0), torch.tensor(1.0)) * 9**0.5
    upper = noise(torch.tensor(10.0), torch.tensor(4.0)) * 6**0.5
    lower = noise(torch.tensor(4.0), torch.tensor(1.0)) * 3**0.5
    halves = upper + lower
    assert torch.allclose(whole, halves, atol=1e-4)
    assert abs(float(whole.std() / 3) - 1) < 0.5  # unit Gaussian after dividing by sqrt(length)


def test_er_sde_first_stage_ode_is_euler(model_sampling: ModelSampling) -> None:
    """With f(l) = l (reverse-time eta 0), no noise and one stage, ER-SDE's step is the Euler step."""
    sigmas = sigmas_for(model_sampling, "karras", 5)
    noise = prepare_noise(LATENT, 4)
    model = gaussian_denoiser(0.3, 0.5)
    euler = sample(model, noise, LATENT, sigmas, "euler", model_sampling=model_sampling)
    options = {"eta": 0.0, "s_noise": 0.0, "max_stage": 1}
    ode = sample(
        model, noise, LATENT, sigmas, "er_sde", model_sampling=model_sampling, sampler_options=options
    )
    assert torch.allclose(ode, euler, atol=1e-5)
    higher = {"eta": 0.0, "s_noise": 0.0, "max_stage": 3}
    third = sample(
        model, noise, LATENT, sigmas, "er_sde", model_sampling=model_sampling, sampler_options=higher
    )
    assert not torch.allclose(third, euler, atol=1e-4)  # the extra stages do something
    first = sample(model, noise, LATENT, sigmas, "er_sde", model_sampling=model_sampling, seed=1)
    assert torch.equal(
        first, sample(model, noise, LATENT, sigmas, "er_sde", model_sampling=model_sampling, seed=1)
    )
    assert not torch.allclose(
        first, sample(model, noise, LATENT, sigmas, "er_sde", model_sampling=model_sampling, seed=2)
    )
