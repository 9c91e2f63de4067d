"""CFG++ forms of DPM-Solver++(2S) ancestral and DPM-Solver++(2M), and the gradient-estimation sampler.

CFG++ (Chung et al. 2024, arXiv:2406.08070) renoises with the unconditional prediction instead of the
guided one; the unconditional prediction comes from the guider through the same post-cfg recorder
as Euler CFG++ (engine.sampling.samplers_cfg_pp.recording_uncond). As in ComfyUI these are written in
the VE / eps parameterisation (lambda = -log sigma) and do not branch on the model's sampling.

Gradient estimation (Permenter & Yuan 2024, "Interpreting and Improving Diffusion Models from an
Optimization Perspective") adds (gamma - 1) times the change of the Euler slope to each Euler step.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step, to_d
from engine.sampling.noise import NoiseSampler
from engine.sampling.samplers_cfg_pp import recording_uncond


@torch.no_grad()
def sample_dpmpp_2s_ancestral_cfg_pp(
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
    """DPM-Solver++(2S) ancestral steps whose exponential part carries the unconditional noise:
    x + (denoised - uncond) is the state rebuilt around the uncond prediction (the full step uses the
    guided prediction of the step's start with the uncond of its midpoint, as ComfyUI's does)."""
    extra, recorder = recording_uncond(extra_args)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = run.denoise(x, sigma)
        uncond = recorder.latest(denoised)
        sigma_down, sigma_up = ancestral_step(sigma, sigmas[i + 1], eta)
        run.report(i, x, sigma, sigma, denoised)
        if sigma_down == 0:
            x = denoised + to_d(x, sigma, uncond) * sigma_down
        else:
            h = sigma.log() - sigma_down.log()  # step in lambda = -log sigma
            sigma_mid = (sigma * sigma_down) ** 0.5  # lambda halfway (r = 1/2)
            x_2 = (sigma_mid / sigma) * (x + (denoised - uncond)) - torch.expm1(-h / 2) * denoised
            denoised_2 = run.denoise(x_2, sigma_mid)
            # ComfyUI's full step shifts x by the *midpoint's* uncond (its recorder was overwritten
            # by the second model call); kept, as it decides the image.
            uncond_2 = recorder.latest(denoised_2)
            x = (sigma_down / sigma) * (x + (denoised - uncond_2)) - torch.expm1(-h) * denoised_2
        if sigmas[i + 1] > 0:
            x = x + run.noise(sigma, sigmas[i + 1]) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_dpmpp_2m_cfg_pp(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """DPM-Solver++(2M) with CFG++: the step decays the uncond prediction's noise and corrects with the
    difference between this step's guided prediction and the last step's uncond one."""
    extra, recorder = recording_uncond(extra_args)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    old_uncond: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        uncond = recorder.latest(denoised)
        run.report(i, x, sigma, sigma, denoised)
        if sigma_next == 0:  # h is infinite: exp(-h) = 0 leaves the prediction
            x = denoised
        else:
            decay = sigma_next / sigma  # exp(-h)
            mix = -decay * uncond
            if old_uncond is not None:
                r = (sigmas[i - 1].log() - sigma.log()) / (sigma.log() - sigma_next.log())
                mix = mix - torch.expm1(sigma_next.log() - sigma.log()) / (2 * r) * (denoised - old_uncond)
            x = denoised + mix + decay * x
        old_uncond = uncond
    return x


@torch.no_grad()
def sample_gradient_estimation(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    ge_gamma: float = 2.0,
    cfg_pp: bool = False,
) -> Tensor:
    """Euler steps plus (ge_gamma - 1) * (d - d_prev) * dt from the second step on; with `cfg_pp` the
    slope is the uncond prediction's and the Euler step restarts from the guided prediction."""
    extra, recorder = recording_uncond(extra_args) if cfg_pp else (extra_args, None)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    old_d: Tensor | None = None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        d = to_d(x, sigma, denoised if recorder is None else recorder.latest(denoised))
        run.report(i, x, sigma, sigma, denoised)
        dt = sigma_next - sigma
        if sigma_next == 0:
            x = denoised
        else:
            x = x + d * dt if recorder is None else denoised + d * sigma_next
            if old_d is not None:
                x = x + (ge_gamma - 1) * (d - old_d) * dt
        old_d = d
    return x


@torch.no_grad()
def sample_gradient_estimation_cfg_pp(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    ge_gamma: float = 2.0,
) -> Tensor:
    """Gradient estimation with CFG++ (see sample_gradient_estimation)."""
    return sample_gradient_estimation(
        model,
        x,
        sigmas,
        extra_args=extra_args,
        callback=callback,
        noise_sampler=noise_sampler,
        ge_gamma=ge_gamma,
        cfg_pp=True,
    )
