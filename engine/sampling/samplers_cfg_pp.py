"""CFG++ samplers (Chung et al. 2024, arXiv:2406.08070): the step back to the next noise level uses the
unconditional prediction's noise instead of the guided one, which keeps guided sampling on the data
manifold at low cfg.

They need the unconditional prediction at each step, which only the guider knows: like ComfyUI's,
they add a post-cfg function to the `model_options` of `extra_args` that records it (and turn off
the cfg-1 shortcut so that it is always computed). A model callable that ignores `model_options`
(a plain denoiser, no guidance) is taken as unguided: its prediction is its own uncond, and the
samplers reduce to Euler (ancestral).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run, ancestral_step, to_d
from engine.sampling.noise import NoiseSampler


class UncondRecorder:
    """A post-cfg function that keeps the latest unconditional prediction and changes nothing."""

    def __init__(self) -> None:
        self.uncond: Tensor | None = None

    def __call__(self, args: dict[str, Any]) -> Tensor:
        self.uncond = args["uncond_denoised"]
        return args["denoised"]

    def latest(self, denoised: Tensor) -> Tensor:
        """The uncond prediction of the last model call; `denoised` itself if the model ran no
        post-cfg functions (an unguided denoiser)."""
        uncond, self.uncond = self.uncond, None
        return denoised if uncond is None else uncond


def recording_uncond(extra_args: dict[str, Any] | None) -> tuple[dict[str, Any], UncondRecorder]:
    """extra_args whose model_options (a copy) also record the unconditional prediction."""
    from engine.diffusion.model_options import set_model_options_post_cfg_function

    recorder = UncondRecorder()
    extra = dict(extra_args or {})
    options = dict(extra.get("model_options", {}))
    extra["model_options"] = set_model_options_post_cfg_function(
        options, recorder, disable_cfg1_optimization=True
    )
    return extra, recorder


def signal_scale(sigma: Tensor, model_sampling: Any) -> Tensor:
    """alpha at sigma: sigma * exp(half-log-SNR), 1 for variance-exploding (eps/v) models, 1 - sigma
    for rectified-flow ones."""
    if getattr(model_sampling, "is_flow", False):
        return 1.0 - sigma
    return torch.ones_like(sigma)


@torch.no_grad()
def sample_euler_ancestral_cfg_pp(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    eta: float = 1.0,
    s_noise: float = 1.0,
    model_sampling: Any = None,
) -> Tensor:
    """Euler ancestral steps with CFG++ (DDIM-style stochastic step on the uncond noise)."""
    extra, recorder = recording_uncond(extra_args)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = run.denoise(x, sigma)
        run.report(i, x, sigma, sigma, denoised)
        if sigma_next == 0:
            x = denoised
            continue
        alpha = signal_scale(sigma, model_sampling)
        alpha_next = signal_scale(sigma_next, model_sampling)
        d = to_d(x, sigma, alpha * recorder.latest(denoised))
        sigma_down, sigma_up = ancestral_step(sigma / alpha, sigma_next / alpha_next, eta)
        x = alpha_next * denoised + alpha_next * sigma_down * d
        if eta > 0 and s_noise > 0:
            x = x + alpha_next * run.noise(sigma, sigma_next) * s_noise * sigma_up
    return x


@torch.no_grad()
def sample_euler_cfg_pp(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    model_sampling: Any = None,
) -> Tensor:
    """Euler steps with CFG++: the ancestral form without noise."""
    return sample_euler_ancestral_cfg_pp(
        model,
        x,
        sigmas,
        extra_args=extra_args,
        callback=callback,
        noise_sampler=noise_sampler,
        eta=0.0,
        s_noise=0.0,
        model_sampling=model_sampling,
    )


@torch.no_grad()
def sample_euler_pp(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """SamplerEulerCFG++'s "alternative" form (ComfyUI's sample_euler_pp): an Euler step whose slope is
    taken from x - denoised + uncond, i.e. the guided prediction's direction corrected by the uncond."""
    extra, recorder = recording_uncond(extra_args)
    run = Run(model, x, extra, callback, noise_sampler, len(sigmas) - 1)
    for i in range(len(sigmas) - 1):
        sigma = sigmas[i]
        denoised = run.denoise(x, sigma)
        d = to_d(x - denoised + recorder.latest(denoised), sigma, denoised)
        run.report(i, x, sigma, sigma, denoised)
        x = x + d * (sigmas[i + 1] - sigma)
    return x
