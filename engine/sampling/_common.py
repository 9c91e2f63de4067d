"""Math and plumbing shared by the samplers (k-diffusion conventions, x = x0 + sigma * eps)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from engine.sampling.noise import NoiseSampler, default_noise_sampler

Model = Callable[..., Tensor]
"""``model(x, sigma, **extra_args)`` returns the denoised prediction; ``sigma`` has shape ``[batch]``."""

Callback = Callable[[dict[str, Any]], None]
"""Per-step hook, called with ``{"i", "x", "sigma", "sigma_hat", "denoised", "total"}``."""


class Run:
    """Per-call state every sampler needs: model arguments, batch sigma shape, noise, callback."""

    def __init__(
        self,
        model: Model,
        x: Tensor,
        extra_args: dict[str, Any] | None,
        callback: Callback | None,
        noise_sampler: NoiseSampler | None,
        total: int | None,
    ) -> None:
        self.model = model
        self.extra_args = {} if extra_args is None else extra_args
        self.s_in = x.new_ones([x.shape[0]])
        self.noise = default_noise_sampler(x) if noise_sampler is None else noise_sampler
        self.callback = callback
        self.total = total

    def denoise(self, x: Tensor, sigma: Tensor) -> Tensor:
        """Evaluate the model at a scalar ``sigma`` for the whole batch."""
        return self.model(x, sigma * self.s_in, **self.extra_args)

    def report(self, i: int, x: Tensor, sigma: Tensor, sigma_hat: Tensor, denoised: Tensor) -> None:
        """Call the step callback; an exception raised there aborts sampling."""
        if self.callback is not None:
            self.callback(
                {
                    "i": i,
                    "x": x,
                    "sigma": sigma,
                    "sigma_hat": sigma_hat,
                    "denoised": denoised,
                    "total": self.total,
                }
            )


def to_d(x: Tensor, sigma: Tensor, denoised: Tensor) -> Tensor:
    """Derivative dx/dsigma of the probability-flow ODE (Karras et al. 2022, eq. 3)."""
    return (x - denoised) / sigma


def ancestral_step(sigma_from: Tensor, sigma_to: Tensor, eta: float = 1.0) -> tuple[Tensor, Tensor]:
    """Split a step into a deterministic part down to ``sigma_down`` and fresh noise of size ``sigma_up``.

    ``sigma_down**2 + sigma_up**2 == sigma_to**2``; ``eta`` scales the amount of noise
    (0 gives the deterministic step, 1 the DDPM-like ancestral step).
    """
    if not eta:
        return sigma_to, torch.zeros_like(sigma_to)
    variance = sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2
    # An infinite sigma_from (CFG++ on a flow model at sigma 1, where alpha is 0) makes the variance
    # NaN; ComfyUI's Python min() then keeps sigma_to, i.e. a step of pure fresh noise.
    sigma_up = torch.minimum(sigma_to, torch.nan_to_num(eta * variance**0.5, nan=float("inf")))
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    return sigma_down, sigma_up


def churn(
    run: Run,
    x: Tensor,
    sigmas: Tensor,
    i: int,
    s_churn: float,
    s_tmin: float,
    s_tmax: float,
    s_noise: float,
) -> tuple[Tensor, Tensor]:
    """Karras et al. 2022 Algorithm 2 "churn": raise sigma_i to sigma_hat by adding noise.

    Returns ``(x, sigma_hat)``; with ``s_churn == 0`` nothing changes and no noise is drawn.
    """
    sigma = sigmas[i]
    if s_churn <= 0 or not s_tmin <= float(sigma) <= s_tmax:
        return x, sigma
    gamma = min(s_churn / (len(sigmas) - 1), 2**0.5 - 1)
    sigma_hat = sigma * (gamma + 1)
    x = x + run.noise(sigma, sigma_hat) * s_noise * (sigma_hat**2 - sigma**2) ** 0.5
    return x, sigma_hat


def dpmpp_first_order(x: Tensor, sigma: Tensor, sigma_next: Tensor, denoised: Tensor) -> Tensor:
    """First-order DPM-Solver++ (= DDIM) step in data prediction; exact when the model is constant."""
    if sigma_next == 0:
        return denoised
    ratio = sigma_next / sigma
    return ratio * x + (1 - ratio) * denoised
