"""Discrete-time (DDPM-trained) model sampling: the sigma table and eps / v parameterisations.

Follows ComfyUI's ``ModelSamplingDiscrete`` with ``EPS`` / ``V_PREDICTION``: the table
holds sigma_t = sqrt((1 - alphabar_t) / alphabar_t) for t = 0..T-1 (Karras et al. 2022,
VP-to-VE conversion), sampling works on x = x0 + sigma * eps, and the network sees
x / sqrt(sigma^2 + 1) together with the discrete timestep nearest to sigma.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Model

PREDICTION_TYPES = ("eps", "v_prediction")
BETA_SCHEDULES = ("scaled_linear", "linear")

UnetFn = Callable[..., Tensor]
"""``unet_fn(x_scaled, timestep, **cond)`` returns the network output (eps or v)."""


def _per_sample(sigma: Tensor, like: Tensor) -> Tensor:
    """Reshape a scalar or ``[batch]`` sigma so it broadcasts against ``like``."""
    sigma = torch.as_tensor(sigma, device=like.device)
    if sigma.ndim == 0:
        return sigma
    return sigma.reshape(sigma.shape[:1] + (1,) * (like.ndim - 1))


def make_betas(beta_schedule: str, timesteps: int, linear_start: float, linear_end: float) -> Tensor:
    """DDPM beta schedule in float64.

    ``scaled_linear`` is linear in sqrt(beta) (SD1/SD2/SDXL; called ``linear`` in the
    original LDM configs and ComfyUI), ``linear`` is linear in beta (diffusers naming).
    """
    if beta_schedule == "scaled_linear":
        return torch.linspace(linear_start**0.5, linear_end**0.5, timesteps, dtype=torch.float64) ** 2
    if beta_schedule == "linear":
        return torch.linspace(linear_start, linear_end, timesteps, dtype=torch.float64)
    raise ValueError(f"unknown beta_schedule {beta_schedule!r}; expected one of {BETA_SCHEDULES}")


class Parameterization:
    """What the network predicts, as ComfyUI's EPS / V_PREDICTION / EDM model types: the input scaling
    c_in, the denoised output, and how noise is added to a latent. Subclasses hold the sigma table
    (`sigmas`) and set `prediction_type` and `sigma_data`."""

    prediction_type: str
    sigma_data: float
    sigmas: Tensor

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        """Network input c_in * x = x / sqrt(sigma^2 + sigma_data^2)."""
        sigma = _per_sample(sigma, x)
        return x / (sigma**2 + self.sigma_data**2) ** 0.5

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        """Denoised x0 from the network output: x - sigma*eps, or the v / EDM (F) preconditioning."""
        sigma = _per_sample(sigma, x)
        if self.prediction_type == "eps":
            return x - model_output * sigma
        total = sigma**2 + self.sigma_data**2
        skip = x * self.sigma_data**2 / total
        out = model_output * sigma * self.sigma_data / total**0.5
        # v-prediction subtracts the scaled output, EDM's F-prediction adds it.
        return skip - out if self.prediction_type == "v_prediction" else skip + out

    def noise_scaling(
        self, sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False
    ) -> Tensor:
        """Starting point ``latent + s * noise`` with s = sqrt(1 + sigma^2) at max denoise, else sigma."""
        sigma = _per_sample(sigma, noise)
        scale = (1.0 + sigma**2) ** 0.5 if max_denoise else sigma
        return noise * scale + latent

    def inverse_noise_scaling(self, sigma: Tensor, latent: Tensor) -> Tensor:
        """Undo any output scaling of the sampler's result (identity for these parameterisations)."""
        return latent


class ModelSampling(Parameterization):
    """Sigma table and input/output scalings of a discrete-time eps or v-prediction model."""

    def __init__(
        self,
        prediction_type: str = "eps",
        *,
        beta_schedule: str = "scaled_linear",
        linear_start: float = 0.00085,
        linear_end: float = 0.012,
        timesteps: int = 1000,
    ) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"unknown prediction_type {prediction_type!r}; expected one of {PREDICTION_TYPES}"
            )
        self.prediction_type = prediction_type
        self.sigma_data = 1.0
        alphas_cumprod = torch.cumprod(
            1.0 - make_betas(beta_schedule, timesteps, linear_start, linear_end), 0
        )
        self.sigmas: Tensor = (((1 - alphas_cumprod) / alphas_cumprod) ** 0.5).float()
        self.log_sigmas: Tensor = self.sigmas.log()

    def timestep(self, sigma: Tensor) -> Tensor:
        """Index of the table entry nearest to ``sigma`` in log space (ComfyUI quantises here)."""
        sigma = torch.as_tensor(sigma)
        dists = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return dists.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def sigma(self, timestep: Tensor) -> Tensor:
        """Sigma at a (possibly fractional) timestep, interpolating linearly in log sigma."""
        timestep = torch.as_tensor(timestep)
        t = timestep.float().to(self.log_sigmas.device).clamp(0, len(self.sigmas) - 1)
        low, high, w = t.floor().long(), t.ceil().long(), t.frac()
        log_sigma = (1 - w) * self.log_sigmas[low] + w * self.log_sigmas[high]
        return log_sigma.exp().to(timestep.device)

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the schedule (0 = start, 1 = end), as ComfyUI's timestep ranges use it."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        return float(self.sigma(torch.tensor((1.0 - percent) * (len(self.sigmas) - 1))))


def denoiser(unet_fn: UnetFn, model_sampling: ModelSampling) -> Model:
    """Wrap an eps/v network as the denoised-prediction ``model(x, sigma, **extra_args)`` samplers call."""

    def model(x: Tensor, sigma: Tensor, **extra_args: Any) -> Tensor:
        x_in = model_sampling.calculate_input(sigma, x)
        timestep = model_sampling.timestep(torch.as_tensor(sigma, device=x.device)).float()
        output = unet_fn(x_in, timestep, **extra_args)
        return model_sampling.calculate_denoised(sigma, output, x)

    return model
