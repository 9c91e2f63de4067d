"""ModelSampling: the SD sigma table, timestep mapping, eps / v parameterisations, denoiser adapter."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from engine.sampling import ModelSampling, denoiser


def test_sd_sigma_table(model_sampling: ModelSampling) -> None:
    assert len(model_sampling.sigmas) == 1000
    assert float(model_sampling.sigma_max) == pytest.approx(14.6146, abs=1e-4)
    assert float(model_sampling.sigma_min) == pytest.approx(0.0292, abs=1e-4)


def test_timestep_and_sigma_are_inverse_on_the_table(model_sampling: ModelSampling) -> None:
    steps = torch.tensor([0, 1, 250, 999])
    sigmas = model_sampling.sigma(steps)
    torch.testing.assert_close(sigmas, model_sampling.sigmas[steps])
    assert model_sampling.timestep(sigmas).tolist() == steps.tolist()
    between = model_sampling.sigma(torch.tensor(250.5))
    expected = (model_sampling.log_sigmas[250] + model_sampling.log_sigmas[251]).div(2).exp()
    torch.testing.assert_close(between, expected)  # interpolation is linear in log sigma
    assert int(model_sampling.timestep(between * 1.0001)) == 251


def _vp_pair(x0: Tensor, eps: Tensor, sigma: float) -> tuple[Tensor, Tensor]:
    """x in sigma space and the v target (Salimans & Ho 2022) in VP space."""
    alpha, sigma_vp = 1 / (1 + sigma**2) ** 0.5, sigma / (1 + sigma**2) ** 0.5
    return x0 + sigma * eps, alpha * eps - sigma_vp * x0


@pytest.mark.parametrize("prediction_type", ["eps", "v_prediction"])
def test_denoiser_recovers_x0_from_the_true_network_output(prediction_type: str) -> None:
    ms = ModelSampling(prediction_type)
    x0, eps = torch.randn(2, 3, 2, 2), torch.randn(2, 3, 2, 2)
    sigma = 3.0
    x, v = _vp_pair(x0, eps, sigma)
    target = eps if prediction_type == "eps" else v
    seen: list[Tensor] = []

    def unet(x_scaled: Tensor, timestep: Tensor) -> Tensor:
        seen.append(timestep)
        torch.testing.assert_close(x_scaled, x / (1 + sigma**2) ** 0.5)
        return target

    out = denoiser(unet, ms)(x, torch.full((2,), sigma))
    torch.testing.assert_close(out, x0, rtol=1e-5, atol=1e-5)
    assert seen[0].tolist() == [float(ms.timestep(torch.tensor(sigma)))] * 2


def test_noise_scaling(model_sampling: ModelSampling) -> None:
    noise, latent = torch.ones(1, 1, 1, 1), torch.full((1, 1, 1, 1), 2.0)
    sigma = torch.tensor(3.0)
    assert float(model_sampling.noise_scaling(sigma, noise, latent)) == pytest.approx(5.0)
    assert float(model_sampling.noise_scaling(sigma, noise, latent, max_denoise=True)) == pytest.approx(
        2 + 10**0.5
    )
    assert torch.equal(model_sampling.inverse_noise_scaling(sigma, latent), latent)


def test_linear_beta_schedule_and_bad_arguments() -> None:
    linear = ModelSampling(beta_schedule="linear", linear_start=0.0001, linear_end=0.02)
    alphas_cumprod = torch.cumprod(1 - torch.linspace(0.0001, 0.02, 1000, dtype=torch.float64), 0)
    torch.testing.assert_close(linear.sigmas, ((1 - alphas_cumprod) / alphas_cumprod).sqrt().float())
    with pytest.raises(ValueError, match="prediction_type"):
        ModelSampling("x0")
    with pytest.raises(ValueError, match="beta_schedule"):
        ModelSampling(beta_schedule="cosine")
