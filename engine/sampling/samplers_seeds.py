"""SEEDS-2 and SEEDS-3 (Gonzalez et al. 2023, "SEEDS: Exponential SDE Solvers for Fast High-Quality
Sampling from Diffusion Models", arXiv:2305.14267): stochastic exponential Runge-Kutta solvers in
data prediction over the half log-SNR lambda = log(alpha / sigma).

Written for any model sampling as ComfyUI's are: lambda = -log sigma (alpha = 1) for eps / v models,
lambda = log((1 - sigma) / sigma) (alpha = 1 - sigma) for rectified-flow ones, whose first sigma of 1
moves just inside the schedule. With ``eta`` > 0 each stage adds noise, and the stages' noise is one
correlated path: each segment's noise is the previous one decayed by exp((r_a - r_b) h eta) plus a
fresh part of the complementary variance.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run
from engine.sampling.noise import NoiseSampler
from engine.sampling.samplers_flow import offset_first_sigma


def _snr_maps(model_sampling: Any) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
    """(sigma -> lambda, lambda -> sigma) for the model's sampling."""
    if getattr(model_sampling, "is_flow", False):
        return (lambda s: s.logit().neg()), (lambda lam: lam.neg().sigmoid())
    return (lambda s: s.log().neg()), (lambda lam: lam.neg().exp())


def _prepare(sigmas: Tensor, model_sampling: Any) -> Tensor:
    if getattr(model_sampling, "is_flow", False):
        return offset_first_sigma(sigmas, model_sampling)
    return sigmas


class _NoisePath:
    """The SDE noise of one step, carried from stage to stage (see the module docstring)."""

    def __init__(self, run: Run, h: Tensor, eta: float) -> None:
        self.run, self.h, self.eta = run, h, eta
        self.value: Tensor | None = None
        self.fraction = 0.0

    def advance(self, to_fraction: float, sigma_from: Tensor, sigma_to: Tensor) -> Tensor:
        """The path's noise at `to_fraction` of the step (a fraction r_a to r_b move)."""
        factor = (self.fraction - to_fraction) * self.h * self.eta  # negative: h > 0
        fresh = (2 * factor).expm1().neg().sqrt() * self.run.noise(sigma_from, sigma_to)
        self.value = fresh if self.value is None else self.value * factor.exp() + fresh
        self.fraction = to_fraction
        return self.value


def _exp_step(
    x: Tensor, sigma: Tensor, sigma_r: Tensor, lam_r: Tensor, r: float, h: Tensor, eta: float
) -> tuple[Tensor, Tensor]:
    """(x part, alpha_r) of a data-prediction exponential step over r of the step."""
    alpha_r = sigma_r * lam_r.exp()
    return sigma_r / sigma * (-r * h * eta).exp() * x, alpha_r


@torch.no_grad()
def sample_seeds_2(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
    model_sampling: Any = None,
) -> Tensor:
    """SEEDS-2: one intermediate stage at fraction `r` of the step in lambda."""
    lambda_fn, sigma_fn = _snr_maps(model_sampling)
    sigmas = _prepare(sigmas, model_sampling)
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    noisy = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        lam_s, lam_t = lambda_fn(sigma), lambda_fn(sigma_next)
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1 = torch.lerp(lam_s, lam_t, r)
        sigma_1 = sigma_fn(lam_1)
        path = _NoisePath(run, h, eta)
        x_part, alpha_1 = _exp_step(x, sigma, sigma_1, lam_1, r, h, eta)
        x_2 = x_part - alpha_1 * torch.expm1(-r * h_eta) * denoised
        if noisy:
            x_2 = x_2 + path.advance(r, sigma, sigma_1) * sigma_1 * s_noise
        denoised_2 = run.denoise(x_2, sigma_1)
        x_part, alpha_t = _exp_step(x, sigma, sigma_next, lam_t, 1.0, h, eta)
        x = x_part - alpha_t * torch.expm1(-h_eta) * torch.lerp(denoised, denoised_2, 1 / (2 * r))
        if noisy:
            x = x + path.advance(1.0, sigma_1, sigma_next) * sigma_next * s_noise
    return x


def _phi_2(h: Tensor) -> Tensor:
    """h * phi_2(h) = (e^h - 1 - h) / h."""
    return (torch.expm1(h) - h) / h


@torch.no_grad()
def sample_seeds_3(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r_1: float = 1.0 / 3,
    r_2: float = 2.0 / 3,
    model_sampling: Any = None,
) -> Tensor:
    """SEEDS-3: stages at fractions `r_1` and `r_2` of the step in lambda."""
    lambda_fn, sigma_fn = _snr_maps(model_sampling)
    sigmas = _prepare(sigmas, model_sampling)
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    noisy = eta > 0 and s_noise > 0
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        lam_s, lam_t = lambda_fn(sigma), lambda_fn(sigma_next)
        h = lam_t - lam_s
        h_eta = h * (eta + 1)
        lam_1, lam_2 = torch.lerp(lam_s, lam_t, r_1), torch.lerp(lam_s, lam_t, r_2)
        sigma_1, sigma_2 = sigma_fn(lam_1), sigma_fn(lam_2)
        path = _NoisePath(run, h, eta)

        x_part, alpha_1 = _exp_step(x, sigma, sigma_1, lam_1, r_1, h, eta)
        x_2 = x_part - alpha_1 * torch.expm1(-r_1 * h_eta) * denoised
        if noisy:
            x_2 = x_2 + path.advance(r_1, sigma, sigma_1) * sigma_1 * s_noise
        denoised_2 = run.denoise(x_2, sigma_1)

        a_2 = r_2 / r_1 * _phi_2(-r_2 * h_eta)
        a_1 = torch.expm1(-r_2 * h_eta) - a_2
        x_part, alpha_2 = _exp_step(x, sigma, sigma_2, lam_2, r_2, h, eta)
        x_3 = x_part - alpha_2 * (a_1 * denoised + a_2 * denoised_2)
        if noisy:
            x_3 = x_3 + path.advance(r_2, sigma_1, sigma_2) * sigma_2 * s_noise
        denoised_3 = run.denoise(x_3, sigma_2)

        b_3 = _phi_2(-h_eta) / r_2
        b_1 = torch.expm1(-h_eta) - b_3
        x_part, alpha_t = _exp_step(x, sigma, sigma_next, lam_t, 1.0, h, eta)
        x = x_part - alpha_t * (b_1 * denoised + b_3 * denoised_3)
        if noisy:
            x = x + path.advance(1.0, sigma_2, sigma_next) * sigma_next * s_noise
    return x
