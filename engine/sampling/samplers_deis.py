"""DEIS (Zhang & Chen 2023, "Fast Sampling of Diffusion Models with Exponential Integrator",
arXiv:2204.13902), the time-based Adams-Bashforth form ("tAB") that ComfyUI runs as ``deis``.

The EDM schedule's sigmas are mapped to the time t of a VP SDE whose linear beta schedule spans EDM's
default range (sigma 0.002 at t = 1e-3, sigma 80 at t = 1). Each step integrates the eps prediction
against the VP exponential integrand, with the eps history fitted by a Lagrange polynomial in t:

    x_next = x + sum_j C_j eps_{i-j},
    C_j = int_{t_i}^{t_{i+1}} -1/2 dlog(alpha)/dt / sqrt(alpha (1 - alpha)) L_j(t) dt

where alpha(t) = exp(-t^2 (beta_1 - beta_0) / 2 - t beta_0) and L_j is the Lagrange basis over the
last `order` times. The integral is a Riemann sum over 10,000 points spanning the step, as in the reference.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, to_d
from engine.sampling.noise import NoiseSampler

INTEGRATION_POINTS = 10_000
EDM_SIGMA_MIN, EDM_SIGMA_MAX, VP_T_MIN = 0.002, 80.0, 1e-3


def vp_betas() -> tuple[float, float]:
    """(beta_0, beta_1) of the VP schedule through (t 1e-3, sigma 0.002) and (t 1, sigma 80)."""
    log_min = math.log(EDM_SIGMA_MIN**2 + 1)
    log_max = math.log(EDM_SIGMA_MAX**2 + 1)
    beta_d = 2 * (log_min / VP_T_MIN - log_max) / (VP_T_MIN - 1)
    beta_0 = log_max - 0.5 * beta_d
    return beta_0, beta_d + beta_0


def sigma_to_vp_time(sigmas: Tensor) -> Tensor:
    """t with sigma(t) = sqrt(exp(beta_0 t + (beta_1 - beta_0) t^2 / 2) - 1), inverted (float32, CPU)."""
    beta_0, beta_1 = vp_betas()
    beta_d = beta_1 - beta_0
    sigmas = sigmas.detach().to("cpu", torch.float32)
    return ((beta_0**2 + 2 * beta_d * (sigmas**2 + 1).log()).sqrt() - beta_0) / beta_d


def _integrand(taus: Tensor) -> Tensor:
    beta_0, beta_1 = vp_betas()
    alpha = torch.exp(-0.5 * taus**2 * (beta_1 - beta_0) - taus * beta_0)
    d_log_alpha = -taus * (beta_1 - beta_0) - beta_0
    return -0.5 * d_log_alpha / torch.sqrt(alpha * (1 - alpha))


def deis_coefficients(times: Tensor, i: int, order: int) -> list[Tensor]:
    """[C_0 .. C_{order-1}] of the step from times[i] to times[i+1], over times[i], times[i-1], ..."""
    t_cur, t_next = times[i], times[i + 1]
    taus = torch.linspace(float(t_cur), float(t_next), INTEGRATION_POINTS)
    dtau = (t_next - t_cur) / INTEGRATION_POINTS
    nodes = [times[i - k] for k in range(order)]
    weights = _integrand(taus)
    coefficients = []
    for j in range(order):
        basis = torch.ones_like(taus)
        for k in range(order):
            if k != j:
                basis = basis * (taus - nodes[k]) / (nodes[j] - nodes[k])
        coefficients.append(torch.sum(weights * basis) * dtau)
    return coefficients


@torch.no_grad()
def sample_deis(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    max_order: int = 3,
) -> Tensor:
    """DEIS tAB steps of order up to `max_order` (1-4); Euler on the first and the final step."""
    if not 1 <= max_order <= 4:
        raise ValueError(f"deis: max_order must be 1-4, got {max_order}")
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    times = sigma_to_vp_time(sigmas)
    history: list[Tensor] = []  # eps of the previous steps, newest last, at most max_order - 1
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, sigma, denoised)
        d = to_d(x, sigma, denoised)
        order = 1 if sigma_next <= 0 else min(max_order, i + 1)
        if order == 1:
            x = x + (sigma_next - sigma) * d
        else:
            coefficients = deis_coefficients(times, i, order)
            terms = [d, *reversed(history[-(order - 1) :])]
            x = x + sum(float(c) * term for c, term in zip(coefficients, terms, strict=True))
        history = [*history, d][-(max_order - 1) :] if max_order > 1 else []
    return x
