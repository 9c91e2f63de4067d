"""Sampler forms for rectified-flow (CONST) models, where x = (1 - sigma) x0 + sigma eps.

The deterministic samplers (Euler, Heun, DPM++ 2M, UniPC...) work on flow models unchanged, as in
ComfyUI. Those that add noise do not: the VE ancestral split sigma_down^2 + sigma_up^2 = sigma_next^2
ignores the shrinking signal scale alpha = 1 - sigma. ComfyUI switches these to flow forms, and so
does Loom (engine.sampling.registry picks them when the model sampling is a flow one):

* ancestral Euler / DPM-2 / DPM++(2S): step down to sigma_down = sigma_next (1 + (sigma_next/sigma - 1)
  eta), then rescale by alpha_next / alpha_down and add noise so the marginal matches sigma_next;
* DPM++ SDE, 2M SDE, 3M SDE: the same exponential integrators in half log-SNR
  lambda = log(alpha / sigma) = log((1 - sigma) / sigma), with alpha_t weighting the data terms;
* LCM: re-noise the prediction with the flow's noise scaling.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step, to_d
from engine.sampling.noise import NoiseSampler


def half_log_snr(sigma: Tensor) -> Tensor:
    """lambda = log((1 - sigma) / sigma)."""
    return sigma.logit().neg()


def sigma_from_half_log_snr(lam: Tensor) -> Tensor:
    return lam.neg().sigmoid()


def offset_first_sigma(sigmas: Tensor, model_sampling: Any) -> Tensor:
    """Move a first sigma of 1 (infinite log-SNR) just inside the schedule, as ComfyUI does."""
    if len(sigmas) > 1 and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = float(model_sampling.percent_to_sigma(1e-4))
    return sigmas


def _flow_ancestral(sigma: Tensor, sigma_next: Tensor, eta: float) -> tuple[Tensor, Tensor, Tensor]:
    """(sigma_down, alpha ratio alpha_next / alpha_down, renoise coefficient) of a flow ancestral step."""
    sigma_down = sigma_next * (1 + (sigma_next / sigma - 1) * eta)
    alpha_next, alpha_down = 1 - sigma_next, 1 - sigma_down
    renoise = (sigma_next**2 - sigma_down**2 * alpha_next**2 / alpha_down**2) ** 0.5
    return sigma_down, alpha_next / alpha_down, renoise


@torch.no_grad()
def sample_euler_ancestral_rf(
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
    """Ancestral Euler for rectified flow (ComfyUI's sample_euler_ancestral_RF)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        sigma_down, ratio, renoise = _flow_ancestral(sigmas[i], sigmas[i + 1], eta)
        down = sigma_down / sigmas[i]
        x = down * x + (1 - down) * denoised
        if eta > 0:
            x = ratio * x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


@torch.no_grad()
def sample_dpm_2_ancestral_rf(
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
    """Ancestral DPM-Solver-2 steps for rectified flow (ComfyUI's sample_dpm_2_ancestral_RF)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, ratio, renoise = _flow_ancestral(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        d = to_d(x, sigmas[i], denoised)
        if sigma_down == 0:
            x = x + d * (sigma_down - sigmas[i])
            continue
        sigma_mid = sigmas[i].log().lerp(sigma_down.log(), 0.5).exp()
        x_2 = x + d * (sigma_mid - sigmas[i])
        d_2 = to_d(x_2, sigma_mid, run.denoise(x_2, sigma_mid))
        x = x + d_2 * (sigma_down - sigmas[i])
        x = ratio * x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


@torch.no_grad()
def sample_dpmpp_2s_ancestral_rf(
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
    """Ancestral DPM-Solver++(2S) for rectified flow (ComfyUI's sample_dpmpp_2s_ancestral_RF)."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        sigma_down, ratio, renoise = _flow_ancestral(sigmas[i], sigmas[i + 1], eta)
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = x + to_d(x, sigmas[i], denoised) * (sigma_down - sigmas[i])
        else:
            if sigmas[i] == 1.0:
                sigma_s = torch.tensor(0.9999, dtype=sigmas.dtype, device=sigmas.device)
            else:
                t_i, t_down = -half_log_snr(sigmas[i]), -half_log_snr(sigma_down)
                sigma_s = sigma_from_half_log_snr(-(t_i + 0.5 * (t_down - t_i)))
            mid = sigma_s / sigmas[i]
            d_i = run.denoise(mid * x + (1 - mid) * denoised, sigma_s)
            down = sigma_down / sigmas[i]
            x = down * x + (1 - down) * d_i
        if sigmas[i + 1] > 0 and eta > 0:
            x = ratio * x + run.noise(sigmas[i], sigmas[i + 1]) * s_noise * renoise
    return x


@torch.no_grad()
def sample_lcm_rf(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """LCM multistep (Luo et al. 2023) re-noising with the flow interpolation (1 - s) x0 + s eps."""
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        x = denoised
        if sigmas[i + 1] > 0:
            x = sigmas[i + 1] * run.noise(sigmas[i], sigmas[i + 1]) + (1 - sigmas[i + 1]) * x
    return x


@torch.no_grad()
def sample_dpmpp_sde_rf(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    model_sampling: Any,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    r: float = 0.5,
) -> Tensor:
    """DPM-Solver++ (stochastic, two stages; Lu et al. 2022) in the flow's half log-SNR."""
    sigmas = offset_first_sigma(sigmas, model_sampling)
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    fac = 1 / (2 * r)
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        lambda_s_1 = lambda_s + r * (lambda_t - lambda_s)
        sigma_s_1 = sigma_from_half_log_snr(lambda_s_1)
        alpha_s = sigmas[i] * lambda_s.exp()
        alpha_s_1 = sigma_s_1 * lambda_s_1.exp()
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_s_1.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        x_2 = (alpha_s_1 / alpha_s) * (-h_).exp() * x - alpha_s_1 * (-h_).expm1() * denoised
        if eta > 0 and s_noise > 0:
            x_2 = x_2 + alpha_s_1 * run.noise(sigmas[i], sigma_s_1) * s_noise * su
        denoised_2 = run.denoise(x_2, sigma_s_1)
        sd, su = ancestral_step(lambda_s.neg().exp(), lambda_t.neg().exp(), eta)
        h_ = sd.log().neg() - lambda_s
        denoised_d = (1 - fac) * denoised + fac * denoised_2
        x = (alpha_t / alpha_s) * (-h_).exp() * x - alpha_t * (-h_).expm1() * denoised_d
        if eta > 0 and s_noise > 0:
            x = x + alpha_t * run.noise(sigmas[i], sigmas[i + 1]) * s_noise * su
    return x


def _multistep_sde_rf(
    run: Run, x: Tensor, sigmas: Tensor, eta: float, s_noise: float, max_order: int, solver_type: str
) -> Tensor:
    """DPM-Solver++(2M/3M) SDE in the flow's half log-SNR; the data terms carry alpha_t."""
    history: list[tuple[Tensor, Tensor]] = []  # (denoised, h) of previous steps, newest first
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        if sigmas[i + 1] == 0:
            x = denoised
            continue
        lambda_s, lambda_t = half_log_snr(sigmas[i]), half_log_snr(sigmas[i + 1])
        h = lambda_t - lambda_s
        h_eta = h * (eta + 1)
        alpha_t = sigmas[i + 1] * lambda_t.exp()
        phi_1 = -torch.expm1(-h_eta)
        x = sigmas[i + 1] / sigmas[i] * torch.exp(-h * eta) * x + alpha_t * phi_1 * denoised
        order = min(max_order, len(history) + 1)
        phi_2 = phi_1 / -h_eta + 1
        if order == 3:
            (d_1, h_1), (d_2, h_2) = history[0], history[1]
            r0, r1 = h_1 / h, h_2 / h
            d1_0, d1_1 = (denoised - d_1) / r0, (d_1 - d_2) / r1
            d1 = d1_0 + (d1_0 - d1_1) * r0 / (r0 + r1)
            d2 = (d1_0 - d1_1) / (r0 + r1)
            x = x + alpha_t * phi_2 * d1 - alpha_t * (phi_2 / h_eta - 0.5) * d2
        elif order == 2:
            slope = (denoised - history[0][0]) * (h / history[0][1])
            coeff = phi_2 if solver_type == "heun" else 0.5 * phi_1
            x = x + alpha_t * coeff * slope
        if eta > 0 and s_noise > 0:
            x = (
                x
                + run.noise(sigmas[i], sigmas[i + 1])
                * sigmas[i + 1]
                * (-torch.expm1(-2 * h * eta)).sqrt()
                * s_noise
            )
        history = [(denoised, h), *history][: max_order - 1]
    return x


@torch.no_grad()
def sample_dpmpp_2m_sde_rf(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    model_sampling: Any,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    solver_type: str = "midpoint",
) -> Tensor:
    """DPM-Solver++(2M) SDE (Lu et al. 2022) for rectified flow; ``solver_type`` midpoint or heun."""
    if solver_type not in ("midpoint", "heun"):
        raise ValueError("solver_type must be 'midpoint' or 'heun'")
    sigmas = offset_first_sigma(sigmas, model_sampling)
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _multistep_sde_rf(run, x, sigmas, eta, s_noise, 2, solver_type)


@torch.no_grad()
def sample_dpmpp_3m_sde_rf(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    model_sampling: Any,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
) -> Tensor:
    """DPM-Solver++(3M) SDE (k-diffusion's third-order extension) for rectified flow."""
    sigmas = offset_first_sigma(sigmas, model_sampling)
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    return _multistep_sde_rf(run, x, sigmas, eta, s_noise, 3, "heun")
