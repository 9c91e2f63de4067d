"""Flow-matching (rectified flow) model sampling: shifted sigma tables and the CONST parameterisation.

Rectified-flow models (SD3, Flux, AuraFlow, Z-Image...) are trained on x_t = (1 - t) x0 + t eps and
predict the velocity v = eps - x0, so x0 = x - sigma * v (ComfyUI's ``CONST``). Sigma equals t, runs
from 1 (pure noise) to 0, and resolution-dependent "shift" moves the schedule toward high noise:

* ``ModelSamplingDiscreteFlow`` (SD3, AuraFlow): sigma(t) = s t / (1 + (s - 1) t), Esser et al. 2024
  (arXiv:2403.03206) eq. 23, over a table of 1000 entries; the network sees t * multiplier
  (1000 for SD3, 1 for AuraFlow and Z-Image).
* ``ModelSamplingFlux``: sigma(t) = e^mu / (e^mu + (1/t - 1)), the Flux reference's time shift, over
  10000 entries; the network sees sigma itself.

Both expose the same attributes as ``engine.sampling.ModelSampling`` (sigma table, timestep/sigma
conversion, percent_to_sigma, input/output scalings), so every scheduler works on them unchanged.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.sampling.model_sampling import _per_sample


def time_snr_shift(shift: float, t: Tensor | float) -> Tensor | float:
    """SD3's timestep shift (ComfyUI's time_snr_shift): identity at shift 1."""
    if shift == 1.0:
        return t
    return shift * t / (1 + (shift - 1) * t)


def flux_time_shift(mu: float, sigma: float, t: Tensor | float) -> Tensor | float:
    """Flux's exponential time shift e^mu / (e^mu + (1/t - 1)^sigma)."""
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)


def flux_shift(max_shift: float, base_shift: float, width: int, height: int) -> float:
    """ModelSamplingFlux's mu: linear in the number of 2x2 latent patches, base_shift at 256 patches
    and max_shift at 4096."""
    slope = (max_shift - base_shift) / (4096 - 256)
    return (width * height / (8 * 8 * 2 * 2)) * slope + base_shift - slope * 256


class FlowSampling:
    """CONST parameterisation shared by the flow samplings: x = (1 - sigma) x0 + sigma eps."""

    prediction_type = "flow"
    is_flow = True
    sigma_data = 1.0
    sigmas: Tensor

    @property
    def sigma_min(self) -> Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> Tensor:
        return self.sigmas[-1]

    @property
    def log_sigmas(self) -> Tensor:
        return self.sigmas.log()

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        return x

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        """x0 = x - sigma * v."""
        return x - model_output * _per_sample(sigma, x)

    def noise_scaling(
        self, sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False
    ) -> Tensor:
        sigma = _per_sample(sigma, noise)
        return sigma * noise + (1.0 - sigma) * latent

    def inverse_noise_scaling(self, sigma: Tensor, latent: Tensor) -> Tensor:
        return latent / (1.0 - _per_sample(sigma, latent))

    def _sigma(self, t: Tensor | float) -> Tensor | float:
        raise NotImplementedError

    def percent_to_sigma(self, percent: float) -> float:
        if percent <= 0.0:
            return 1.0
        if percent >= 1.0:
            return 0.0
        return float(self._sigma(1.0 - percent))


class ModelSamplingDiscreteFlow(FlowSampling):
    """SD3 / AuraFlow sampling (ComfyUI's ModelSamplingDiscreteFlow + CONST)."""

    def __init__(self, shift: float = 1.0, multiplier: float = 1000, timesteps: int = 1000) -> None:
        self.shift = shift
        self.multiplier = multiplier
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps * multiplier)

    def timestep(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma) * self.multiplier

    def sigma(self, timestep: Tensor) -> Tensor:
        return torch.as_tensor(time_snr_shift(self.shift, torch.as_tensor(timestep) / self.multiplier))

    def _sigma(self, t: Tensor | float) -> Tensor | float:
        return time_snr_shift(self.shift, t)

    def __repr__(self) -> str:
        return f"ModelSamplingDiscreteFlow(shift={self.shift}, multiplier={self.multiplier})"


class ModelSamplingFlux(FlowSampling):
    """Flux sampling (ComfyUI's ModelSamplingFlux + CONST); ``shift`` is mu."""

    def __init__(self, shift: float = 1.15, timesteps: int = 10000) -> None:
        self.shift = shift
        self.sigmas = self.sigma(torch.arange(1, timesteps + 1, dtype=torch.float32) / timesteps)

    def timestep(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma)

    def sigma(self, timestep: Tensor) -> Tensor:
        return torch.as_tensor(flux_time_shift(self.shift, 1.0, torch.as_tensor(timestep)))

    def _sigma(self, t: Tensor | float) -> Tensor | float:
        return flux_time_shift(self.shift, 1.0, t)

    def __repr__(self) -> str:
        return f"ModelSamplingFlux(shift={self.shift})"


def is_flow(model_sampling: object) -> bool:
    """Whether a model sampling uses the rectified-flow (CONST) parameterisation."""
    return bool(getattr(model_sampling, "is_flow", False))
