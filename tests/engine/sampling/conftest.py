"""Shared fixtures: tiny toy models with known answers, single-threaded torch."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from engine.sampling import ModelSampling

torch.set_num_threads(1)


def toy_eps(x_scaled: Tensor, timestep: Tensor) -> Tensor:
    """A fixed, mildly nonlinear eps "network" that ignores the timestep (same input for every library)."""
    return 0.3 * torch.tanh(x_scaled) + 0.1 * x_scaled


def gaussian_denoiser(mean: float, std: float):
    """Exact denoiser for data ~ N(mean, std^2): E[x0 | x] = mean + std^2 / (std^2 + sigma^2) * (x - mean)."""

    def model(x: Tensor, sigma: Tensor, **extra_args: object) -> Tensor:
        s = sigma.reshape(-1, *([1] * (x.ndim - 1)))
        return mean + std**2 / (std**2 + s**2) * (x - mean)

    return model


@pytest.fixture(scope="session")
def model_sampling() -> ModelSampling:
    return ModelSampling()
