"""Exponential-integrator samplers in data prediction: DPM-Solver++ family and RES multistep.

Time is lambda = -log(sigma) (half log-SNR of the VE/eps parameterisation, where alpha = 1);
h = lambda_next - lambda is the step size.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step, dpmpp_first_order, to_d
from engine.sampling.noise import NoiseSampler
from engine.sampling.samplers_cfg_pp import recording_uncond


def _log_step(sigma: Tensor, sigma_next: Tensor) -> Tensor:
    """h = log(sigma / sigma_next), the step in lambda = -log(sigma)."""
    return sigma.log() - sigma_next.log()


@torch.no_grad()
def sample_dpmpp_2m(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DPM-Solver++(2M), Lu et al. 2022 (arXiv:2211.01095) Algorithm 2; first order on first and last step."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    old_denoised: Tensor | None = None
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if old_denoised is None or sigmas[i + 1] == 0:
            x = dpmpp_first_order(x, sigmas[i], sigmas[i + 1], denoised)
        else:
            r = _log_step(sigmas[i - 1], sigmas[i]) / _log_step(sigmas[i], sigmas[i + 1])
            denoised_d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = dpmpp_first_order(x, sigmas[i], sigmas[i + 1], denoised_d)
        old_denoised = denoised
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral(
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
    """Ancestral sampling with DPM-Solver++(2S) single-step second-order steps (Lu et al. 2022)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            sigma_mid = (sigmas[i] * sigma_down) ** 0.5
            x_2 = dpmpp_first_order(x, sigmas[i], sigma_mid, denoised)
            x = dpmpp_first_order(x, sigmas[i], sigma_down, run.denoise(x_2, sigma_mid))
        if sigmas[i + 1] > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_sde(
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
) -> Tensor:
    """DPM-Solver++ (stochastic), k-diffusion's two-stage SDE variant of Lu et al. 2022.

    Each step takes an ancestral DPM-Solver++ step to the intermediate point lambda + r*h,
    evaluates the model there, and combines both predictions for the full step.
    """
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        h = _log_step(sigmas[i], sigmas[i + 1])
        sigma_s = sigmas[i] * torch.exp(-r * h)
        sd, su = ancestral_step(sigmas[i], sigma_s, eta)
        x_2 = dpmpp_first_order(x, sigmas[i], sd, denoised)
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + run.noise(sigmas[i], sigma_s) * s_noise * su
        denoised_2 = run.denoise(x_2, sigma_s)
        sd, su = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        x = dpmpp_first_order(x, sigmas[i], sd, (1 - fac) * denoised + fac * denoised_2)
        if eta > 0 and s_noise > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


def _multistep_sde(
    run: Run,
    x: Tensor,
    sigmas: Tensor,
    eta: float,
    s_noise: float,
    max_order: int,
    solver_type: str,
) -> Tensor:
    """DPM-Solver++(2M/3M) SDE (Lu et al. 2022; 3M from k-diffusion): multistep with injected noise.

    ``solver_type`` picks the second-order correction (3M warms up with the heun one).
    """
    history: list[tuple[Tensor, Tensor]] = []  # (denoised, h) of previous steps, newest first
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        h = _log_step(sigmas[i], sigmas[i + 1])
        h_eta = h * (eta + 1)
        phi_1 = -torch.expm1(-h_eta)
        x = sigmas[i + 1] / sigmas[i] * torch.exp(-h * eta) * x + phi_1 * denoised
        order = min(max_order, len(history) + 1)
        if order == 3:
            (d_1, h_1), (d_2, h_2) = history[0], history[1]
            r0, r1 = h_1 / h, h_2 / h
            d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            phi_2 = phi_1 / -h_eta + 1
            x = x + phi_2 * d1 - (phi_2 / h_eta - 0.5) * d2
        elif order == 2:
            slope = (denoised - history[0][0]) * (h / history[0][1])
            coeff = phi_1 / -h_eta + 1 if solver_type == "heun" else 0.5 * phi_1
            x = x + coeff * slope
        if eta > 0 and s_noise > 0:
            noise_std = sigmas[i + 1] * (-torch.expm1(-2 * h * eta)).sqrt()
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * noise_std * s_noise
        history = [(denoised, h), *history][: max_order - 1]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022, arXiv:2211.01095); ``solver_type`` is midpoint or heun."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError("solver_type must be 'midpoint' or 'heun'")
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _multistep_sde(run, x, sigmas, eta, s_noise, 2, solver_type)


@torch.no_grad()
def sample_dpmpp_3m_sde(
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
    """DPM-Solver++(3M) SDE (k-diffusion's third-order multistep extension of Lu et al. 2022)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _multistep_sde(run, x, sigmas, eta, s_noise, 3, "heun")


@torch.no_grad()
def sample_res_multistep(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 0.0,
    s_noise: float = 1.0,
    cfg_pp: bool = False,
) -> Tensor:
    """Second-order RES multistep (Zhang et al. 2023, arXiv:2308.02157); ``eta > 0`` is the ancestral
    form. With ``cfg_pp`` (CFG++) the steps carry the unconditional prediction: the Euler step restarts
    from the guided prediction with the uncond slope, the multistep one shifts x by
    ``denoised - uncond`` and extrapolates from the uncond predictions."""
    extra, recorder = recording_uncond(extra_args) if cfg_pp else (extra_args, None)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    old: tuple[Tensor, Tensor] | None = None  # (prediction, sigma_down) of the previous step
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        uncond = denoised if recorder is None else recorder.latest(denoised)
        sigma_down, sigma_up = ancestral_step(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigma_down == 0 or old is None:
            if recorder is None:
                x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
            else:
                x = denoised + to_d(x, sigmas[i], uncond) * sigma_down
        else:
            old_denoised, old_sigma_down = old
            h = _log_step(sigmas[i], sigma_down)
            c2 = _log_step(old_sigma_down, sigmas[i - 1]) / h
            phi_1 = torch.expm1(-h) / -h
            phi_2 = (phi_1 - 1) / -h
            b1 = torch.nan_to_num(phi_1 - phi_2 / c2, nan=0.0)
            b2 = torch.nan_to_num(phi_2 / c2, nan=0.0)
            x = x + (denoised - uncond)  # zero without CFG++
            x = torch.exp(-h) * x + h * (b1 * uncond + b2 * old_denoised)
        if sigmas[i + 1] > 0 and eta > 0:
            x = x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * sigma_up
        old = (uncond, sigma_down)
    return x
