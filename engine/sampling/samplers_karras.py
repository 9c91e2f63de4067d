"""ODE/ancestral samplers in sigma time from k-diffusion: Euler, Heun, DPM-2, LMS and iPNDM."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step, churn, to_d
from engine.sampling.noise import NoiseSampler


@torch.no_grad()
def sample_euler(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """Euler steps, Algorithm 2 of Karras et al. 2022 (arXiv:2206.00364); ``s_churn`` adds its churn."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = churn(run, x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.denoise(x, sigma_hat)
        run.report(i, x, sigmas[i], sigma_hat, denoised)
        x = x + to_d(x, sigma_hat, denoised) * (sigmas[i + 1] - sigma_hat)
    return x


@torch.no_grad()
def sample_euler_ancestral(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Ancestral sampling with Euler steps (k-diffusion; Karras et al. 2022 / Song et al. 2021)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = denoised
            continue
        x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_heun(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """Heun's second-order method, Algorithm 2 of Karras et al. 2022; Euler on the final step to 0."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = churn(run, x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == 0:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = to_d(x_2, sigmas[i + 1], run.denoise(x_2, sigmas[i + 1]))
        x = x + (d + d_2) / 2 * dt
    return x


@torch.no_grad()
def sample_heunpp2(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """Heun++ (sd-webui-samplers-scheduler): Heun with a third, sigma-weighted look-ahead slope.

    Weights w_k = sigma_k / (3 sigma_0) on the slopes at sigma_{i+1}, sigma_{i+2}; two-slope
    Heun with w = sigma_{i+1} / (2 sigma_0) on the penultimate step, Euler on the last.
    """
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    s_end = sigmas[-1]
    for i in range(len(sigmas) - 1):
        x, sigma_hat = churn(run, x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, sigmas[i], sigma_hat, denoised)
        dt = sigmas[i + 1] - sigma_hat
        if sigmas[i + 1] == s_end:
            x = x + d * dt
            continue
        x_2 = x + d * dt
        d_2 = to_d(x_2, sigmas[i + 1], run.denoise(x_2, sigmas[i + 1]))
        if sigmas[i + 2] == s_end:
            w2 = sigmas[i + 1] / (2 * sigmas[0])
            x = x + (d * (1 - w2) + d_2 * w2) * dt
            continue
        x_3 = x_2 + d_2 * (sigmas[i + 2] - sigmas[i + 1])
        d_3 = to_d(x_3, sigmas[i + 2], run.denoise(x_3, sigmas[i + 2]))
        w2 = sigmas[i + 1] / (3 * sigmas[0])
        w3 = sigmas[i + 2] / (3 * sigmas[0])
        x = x + ((1 - w2 - w3) * d + w2 * d_2 + w3 * d_3) * dt
    return x


def _dpm2_step(run: Run, x: Tensor, d: Tensor, sigma: Tensor, sigma_to: Tensor) -> Tensor:
    """DPM-Solver-2 style midpoint step from sigma to sigma_to, midpoint taken in log sigma."""
    sigma_mid = sigma.log().lerp(sigma_to.log(), 0.5).exp()
    x_2 = x + d * (sigma_mid - sigma)
    d_2 = to_d(x_2, sigma_mid, run.denoise(x_2, sigma_mid))
    return x + d_2 * (sigma_to - sigma)


@torch.no_grad()
def sample_dpm_2(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
) -> Tensor:
    """Second-order sampler inspired by DPM-Solver-2 (Lu et al. 2022) and Karras et al. 2022 Alg. 2."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        x, sigma_hat = churn(run, x, sigmas, i, s_churn, s_tmin, s_tmax, s_noise)
        denoised = run.denoise(x, sigma_hat)
        d = to_d(x, sigma_hat, denoised)
        run.report(i, x, sigmas[i], sigma_hat, denoised)
        if sigmas[i + 1] == 0:
            x = x + d * (sigmas[i + 1] - sigma_hat)
        else:
            x = _dpm2_step(run, x, d, sigma_hat, sigmas[i + 1])
    return x


@torch.no_grad()
def sample_dpm_2_ancestral(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """Ancestral sampling with DPM-Solver-2 style steps (k-diffusion)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        x = _dpm2_step(run, x, d, sigmas[i], sigma_down)
        x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


def lms_coefficient(order: int, t: np.ndarray, i: int, j: int) -> float:
    """Integral over [t_i, t_{i+1}] of the Lagrange basis polynomial of node t_{i-j}.

    The integrand is a polynomial of degree ``order - 1``, so ``order``-point
    Gauss-Legendre quadrature is exact (k-diffusion uses adaptive quadrature instead).
    """
    nodes, weights = np.polynomial.legendre.leggauss(order)
    a, b = t[i], t[i + 1]
    taus = 0.5 * (b - a) * nodes + 0.5 * (b + a)
    basis = np.ones_like(taus)
    for k in range(order):
        if k != j:
            basis *= (taus - t[i - k]) / (t[i - j] - t[i - k])
    return float(0.5 * (b - a) * np.dot(weights, basis))


@torch.no_grad()
def sample_lms(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    order: int = 4,
) -> Tensor:
    """Linear multistep (Adams-Bashforth in sigma, variable step) from k-diffusion.

    As in ComfyUI, the final step to sigma = 0 returns the denoised prediction.
    """
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    t = sigmas.detach().cpu().double().numpy()
    ds: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        ds = [*ds, to_d(x, sigmas[i], denoised)][-order:]
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        cur_order = min(i + 1, order)
        coeffs = [lms_coefficient(cur_order, t, i, j) for j in range(cur_order)]
        x = x + sum(c * d for c, d in zip(coeffs, reversed(ds), strict=False))
    return x


def _ipndm_fixed(d: Tensor, history: list[Tensor], sigmas: Tensor, i: int) -> Tensor:
    """Fixed-step Adams-Bashforth combination of the current and previous slopes (iPNDM)."""
    if not history:
        return d
    if len(history) == 1:
        return (3 * d - history[-1]) / 2
    if len(history) == 2:
        return (23 * d - 16 * history[-1] + 5 * history[-2]) / 12
    return (55 * d - 59 * history[-1] + 37 * history[-2] - 9 * history[-3]) / 24


def _ipndm_variable(d: Tensor, history: list[Tensor], sigmas: Tensor, i: int) -> Tensor:
    """Variable-step Adams-Bashforth coefficients (iPNDM-v, orders 1-4)."""
    if not history:
        return d
    h = [sigmas[i + 1] - sigmas[i]] + [sigmas[i - k] - sigmas[i - k - 1] for k in range(len(history))]
    r1 = h[0] / h[1]
    c1, c2 = (2 + r1) / 2, -r1 / 2
    if len(history) == 1:
        return c1 * d + c2 * history[-1]
    t1 = (1 - h[0] / (3 * (h[0] + h[1])) * (h[0] * (h[0] + h[1])) / (h[1] * (h[1] + h[2]))) / 2
    c1, c2, c3 = c1 + t1, c2 - (1 + h[1] / h[2]) * t1, t1 * h[1] / h[2]
    if len(history) == 2:
        return c1 * d + c2 * history[-1] + c3 * history[-2]
    s01, s012 = h[0] + h[1], h[0] + h[1] + h[2]
    q = h[1] * (h[1] + h[2]) / (h[2] * (h[2] + h[3]))
    t2 = ((1 - h[0] / (3 * s01)) / 2 + (1 - h[0] / (2 * s01)) * h[0] / (6 * s012)) * (
        h[0] * s01 * s012 / (h[1] * (h[1] + h[2]) * (h[1] + h[2] + h[3]))
    )
    c1 = c1 + t2
    c2 = c2 - (1 + h[1] / h[2] + q) * t2
    c3 = c3 + (h[1] / h[2] + q * (1 + h[2] / h[3])) * t2
    c4 = -t2 * q * h[1] / h[2]
    return c1 * d + c2 * history[-1] + c3 * history[-2] + c4 * history[-3]


def _ipndm(run: Run, x: Tensor, sigmas: Tensor, max_order: int, variable: bool) -> Tensor:
    combine = _ipndm_variable if variable else _ipndm_fixed
    history: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
        else:
            x = x + (sigmas[i + 1] - sigmas[i]) * combine(d, history[-(max_order - 1) :], sigmas, i)
        history = [*history, d][-(max_order - 1) :] if max_order > 1 else []
    return x


@torch.no_grad()
def sample_ipndm(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    max_order: int = 4,
) -> Tensor:
    """Improved PNDM (Zhang & Chen 2023, DEIS paper arXiv:2204.13902): fixed-coefficient AB4 in sigma."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _ipndm(run, x, sigmas, max_order, variable=False)


@torch.no_grad()
def sample_ipndm_v(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    max_order: int = 4,
) -> Tensor:
    """iPNDM with variable-step Adams-Bashforth coefficients (zju-pi diff-solvers ``ipndm_v``)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _ipndm(run, x, sigmas, max_order, variable=True)
