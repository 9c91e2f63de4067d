"""Continuous-time model sampling: ComfyUI's ModelSamplingContinuousEDM, ModelSamplingContinuousV and
ModelSamplingCosmosRFlow, for models trained on a continuous range of noise levels.

The sigma table is 1000 entries spaced evenly in log sigma between sigma_min and sigma_max (the
schedulers read it); the network sees c_noise = log(sigma) / 4 (Karras et al. 2022, arXiv:2206.00364,
table 1) for the EDM form, 2 atan(sigma) / pi for the continuous-V form (SD 2.x-style v-prediction
over a continuous schedule) and sigma / (sigma + 1) for Cosmos' rectified-flow form. The input and
output scalings are the eps, v and EDM preconditionings with the given sigma_data.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from engine.sampling.model_sampling import Parameterization, _per_sample

CONTINUOUS_PREDICTIONS = ("eps", "v_prediction", "edm")


class ContinuousEDMSampling(Parameterization):
    """A log-spaced continuous schedule with eps, v or EDM (Karras et al.) output parameterisation."""

    is_flow = False

    def __init__(
        self,
        prediction_type: str = "eps",
        sigma_min: float = 0.002,
        sigma_max: float = 120.0,
        sigma_data: float = 1.0,
    ) -> None:
        if prediction_type not in CONTINUOUS_PREDICTIONS:
            raise ValueError(
                f"unknown prediction_type {prediction_type!r}; expected one of {CONTINUOUS_PREDICTIONS}"
            )
        if sigma_min <= 0 or sigma_max <= 0:
            raise ValueError(f"sigma_min and sigma_max must be > 0 (got {sigma_min}, {sigma_max})")
        self.prediction_type = prediction_type
        self.sigma_data = sigma_data
        self.sigmas: Tensor = torch.linspace(math.log(sigma_min), math.log(sigma_max), 1000).exp()
        self.log_sigmas: Tensor = self.sigmas.log()

    def timestep(self, sigma: Tensor) -> Tensor:
        return 0.25 * torch.as_tensor(sigma).log()

    def sigma(self, timestep: Tensor) -> Tensor:
        return (torch.as_tensor(timestep) / 0.25).exp()

    def percent_to_sigma(self, percent: float) -> float:
        """Sigma at a fraction of the schedule, log-linear between sigma_max (0) and sigma_min (1)."""
        if percent <= 0.0:
            return 999999999.9
        if percent >= 1.0:
            return 0.0
        low = math.log(float(self.sigma_min))
        return math.exp((math.log(float(self.sigma_max)) - low) * (1.0 - percent) + low)


class ContinuousVSampling(ContinuousEDMSampling):
    """v-prediction on a continuous schedule whose network time is 2 atan(sigma) / pi."""

    def __init__(self, sigma_min: float = 0.03, sigma_max: float = 500.0, sigma_data: float = 1.0) -> None:
        super().__init__("v_prediction", sigma_min, sigma_max, sigma_data)

    def timestep(self, sigma: Tensor) -> Tensor:
        return torch.as_tensor(sigma).atan() / math.pi * 2

    def sigma(self, timestep: Tensor) -> Tensor:
        return (torch.as_tensor(timestep) * math.pi / 2).tan()


class CosmosRFlowSampling(ContinuousEDMSampling):
    """Cosmos' rectified flow on the EDM sigma scale: t = sigma / (sigma + 1), x_t = (1 - t) x0 + t eps
    divided by (1 - t), and the network predicts the velocity."""

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 120.0, sigma_data: float = 1.0) -> None:
        super().__init__("eps", sigma_min, sigma_max, sigma_data)

    def timestep(self, sigma: Tensor) -> Tensor:
        sigma = torch.as_tensor(sigma)
        return sigma / (sigma + 1)

    def sigma(self, timestep: Tensor) -> Tensor:
        timestep = torch.as_tensor(timestep)
        sigma_max = self.sigma_max
        if timestep >= sigma_max / (sigma_max + 1):
            return sigma_max
        return timestep / (1 - timestep)

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        t = _per_sample(torch.as_tensor(sigma) / (torch.as_tensor(sigma) + 1), x)
        return x * (1.0 - t)

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        t = _per_sample(torch.as_tensor(sigma) / (torch.as_tensor(sigma) + 1), x)
        return x * (1.0 - t) - model_output * t

    def noise_scaling(
        self, sigma: Tensor, noise: Tensor, latent: Tensor, max_denoise: bool = False
    ) -> Tensor:
        return noise * _per_sample(sigma, noise) + latent
