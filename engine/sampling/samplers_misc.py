"""DDPM, LCM and the DPM-Solver fast / adaptive samplers."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step
from engine.sampling.noise import NoiseSampler


@torch.no_grad()
def sample_ddpm(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """Ancestral DDPM sampling, Ho et al. 2020 (arXiv:2006.11239) Algorithm 2, on arbitrary sigmas.

    The posterior mean and variance are computed in VP space from alphabar = 1 / (1 + sigma^2).
    """
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma, sigma_prev = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, sigma, denoised)
        eps = (x - denoised) / sigma
        alphabar = 1 / (sigma**2 + 1)
        alphabar_prev = 1 / (sigma_prev**2 + 1)
        alpha = alphabar / alphabar_prev
        x_vp = x * alphabar.sqrt()
        x_vp = (x_vp - (1 - alpha) * eps / (1 - alphabar).sqrt()) / alpha.sqrt()
        if sigma_prev > 0:
            std = ((1 - alpha) * (1 - alphabar_prev) / (1 - alphabar)).sqrt()
            x_vp = x_vp + std * run.noise(sigma, sigma_prev)
            x = x_vp / alphabar_prev.sqrt()
        else:
            x = x_vp
    return x


@torch.no_grad()
def sample_lcm(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    s_noise: float = 1.0,
) -> Tensor:
    """Latent Consistency Model multistep sampling (Luo et al. 2023, arXiv:2310.04378).

    Jump to the denoised prediction, then re-noise it to the next sigma with fresh noise.
    """
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * sigmas[i + 1]
    return x


class _DPMSolver:
    """DPM-Solver single-step updates of orders 1-3 in noise prediction (Lu et al. 2022, arXiv:2206.00927).

    Time is t = -log(sigma); ``eps`` is the noise predicted at the start of the step.
    """

    def __init__(self, run: Run) -> None:
        self.run = run

    def eps(self, x: Tensor, t: Tensor) -> Tensor:
        sigma = (-t).exp()
        return (x - self.run.denoise(x, sigma)) / sigma

    def first(self, x: Tensor, t: Tensor, t_next: Tensor, eps: Tensor) -> Tensor:
        return x - (-t_next).exp() * torch.expm1(t_next - t) * eps

    def second(self, x: Tensor, t: Tensor, t_next: Tensor, eps: Tensor, r1: float) -> tuple[Tensor, Tensor]:
        """Order-2 step; also returns the model's noise at the intermediate time t + r1*h."""
        h = t_next - t
        s1 = t + r1 * h
        eps_r1 = self.eps(self.first(x, t, s1, eps), s1)
        x_2 = self.first(x, t, t_next, eps) - (-t_next).exp() / (2 * r1) * torch.expm1(h) * (eps_r1 - eps)
        return x_2, eps_r1

    def third(
        self, x: Tensor, t: Tensor, t_next: Tensor, eps: Tensor, eps_r1: Tensor | None = None
    ) -> Tensor:
        """Order-3 step with r1 = 1/3, r2 = 2/3; ``eps_r1`` reuses a model call made at t + h/3."""
        r1, r2 = 1 / 3, 2 / 3
        h = t_next - t
        s1, s2 = t + r1 * h, t + r2 * h
        if eps_r1 is None:
            eps_r1 = self.eps(self.first(x, t, s1, eps), s1)
        phi = torch.expm1(r2 * h) / (r2 * h) - 1
        u2 = self.first(x, t, s2, eps) - (-s2).exp() * (r2 / r1) * phi * (eps_r1 - eps)
        eps_r2 = self.eps(u2, s2)
        return self.first(x, t, t_next, eps) - (-t_next).exp() / r2 * (torch.expm1(h) / h - 1) * (
            eps_r2 - eps
        )


def _sigma_range(sigmas: Tensor) -> tuple[Tensor, Tensor]:
    """(sigma_max, sigma_min) as ComfyUI picks them: a trailing zero is replaced by the previous sigma."""
    sigma_min = sigmas[-1] if sigmas[-1] > 0 else sigmas[-2]
    return sigmas[0], sigma_min


def _renoise(sigma: Tensor, sigma_next: Tensor, t_end: Tensor, eta: float) -> tuple[Tensor, Tensor]:
    """Ancestral split in t = -log(sigma): deterministic target time and the noise to add after it."""
    sigma_down, _ = ancestral_step(sigma, sigma_next, eta)
    t_down = torch.minimum(t_end, -sigma_down.log())
    return t_down, (sigma_next**2 - (-t_down).exp() ** 2) ** 0.5


@torch.no_grad()
def sample_dpm_fast(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-fast (Lu et al. 2022, arXiv:2206.00927 sec. 3.4): uniform steps in log sigma.

    Uses ``len(sigmas) - 1`` model calls between sigmas[0] and the smallest nonzero sigma,
    mostly third-order steps; like ComfyUI it stops at that sigma instead of 0.
    """
    if len(sigmas) <= 1:
        return x
    nfe = len(sigmas) - 1
    m = nfe // 3 + 1
    orders = [3] * (m - 2) + [2, 1] if nfe % 3 == 0 else [3] * (m - 1) + [nfe % 3]
    run = Run(model, x, extra_args, callback, noise_sampler, len(orders))
    solver = _DPMSolver(run)
    sigma_max, sigma_min = _sigma_range(sigmas)
    t_end = -sigma_min.log()
    ts = torch.linspace(float(-sigma_max.log()), float(t_end), m + 1, device=x.device)
    for i, order in enumerate(orders):
        t, t_next = ts[i], ts[i + 1]
        sigma, sigma_next = (-t).exp(), (-t_next).exp()
        t_down, sigma_up = _renoise(sigma, sigma_next, t_end, eta) if eta else (t_next, torch.zeros(()))
        eps = solver.eps(x, t)
        run.report(i, x, sigma, sigma, x - sigma * eps)
        if order == 1:
            x = solver.first(x, t, t_down, eps)
        elif order == 2:
            x = solver.second(x, t, t_down, eps, r1=0.5)[0]
        else:
            x = solver.third(x, t, t_down, eps)
        if eta:
            x = x + sigma_up * s_noise * run.noise(sigma, sigma_next)
    return x


class _PIDStepSizeController:
    """PID step-size control for the adaptive solver (Söderlind 2003, as used in k-diffusion)."""

    def __init__(
        self, h: float, pcoeff: float, icoeff: float, dcoeff: float, order: float, accept_safety: float
    ):
        self.h = h
        self.b1 = (pcoeff + icoeff + dcoeff) / order
        self.b2 = -(pcoeff + 2 * dcoeff) / order
        self.b3 = dcoeff / order
        self.accept_safety = accept_safety
        self.errs: list[float] = []

    def propose_step(self, error: float) -> bool:
        inv_error = 1 / (error + 1e-8)
        if not self.errs:
            self.errs = [inv_error, inv_error, inv_error]
        self.errs[0] = inv_error
        factor = self.errs[0] ** self.b1 * self.errs[1] ** self.b2 * self.errs[2] ** self.b3
        factor = 1 + math.atan(factor - 1)
        accept = factor >= self.accept_safety
        if accept:
            self.errs[2], self.errs[1] = self.errs[1], self.errs[0]
        self.h *= factor
        return accept


@torch.no_grad()
def sample_dpm_adaptive(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    order: int = 3,
    rtol: float = 0.05,
    atol: float = 0.0078,
    h_init: float = 0.05,
    pcoeff: float = 0.0,
    icoeff: float = 1.0,
    dcoeff: float = 0.0,
    accept_safety: float = 0.81,
    eta: float = 0.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver-12 / 23 with adaptive step size (Lu et al. 2022, arXiv:2206.00927 sec. 3.4 / App. C).

    Only sigmas[0] and the smallest nonzero sigma are used; the number of steps is chosen
    by the error controller, so the callback's ``total`` is None.
    """
    if order not in (2, 3):
        raise ValueError("order should be 2 or 3")
    if len(sigmas) <= 1:
        return x
    run = Run(model, x, extra_args, callback, noise_sampler, None)
    solver = _DPMSolver(run)
    sigma_max, sigma_min = _sigma_range(sigmas)
    s, t_end = -sigma_max.log(), -sigma_min.log()
    atol_t, rtol_t = torch.tensor(atol), torch.tensor(rtol)
    pid = _PIDStepSizeController(abs(h_init), pcoeff, icoeff, dcoeff, 1.5 if eta else order, accept_safety)
    x_prev = x
    steps = 0
    while s < t_end - 1e-5:
        t = torch.minimum(t_end, s + pid.h)
        sigma_s, sigma_t = (-s).exp(), (-t).exp()
        t_down, sigma_up = _renoise(sigma_s, sigma_t, t_end, eta) if eta else (t, torch.zeros(()))
        eps = solver.eps(x, s)
        if order == 2:
            x_low = solver.first(x, s, t_down, eps)
            x_high = solver.second(x, s, t_down, eps, r1=0.5)[0]
        else:
            x_low, eps_r1 = solver.second(x, s, t_down, eps, r1=1 / 3)
            x_high = solver.third(x, s, t_down, eps, eps_r1)
        delta = torch.maximum(atol_t, rtol_t * torch.maximum(x_low.abs(), x_prev.abs()))
        error = float(torch.linalg.norm((x_low - x_high) / delta) / x.numel() ** 0.5)
        run.report(steps, x, sigma_s, sigma_s, x - sigma_s * eps)
        if pid.propose_step(error):
            x_prev = x_low
            x = x_high + sigma_up * s_noise * run.noise(sigma_s, sigma_t) if eta else x_high
            s = t
        steps += 1
    return x
