"""LCM sampling that enlarges the latent as it goes (ComfyUI's SamplerLCMUpscale, "lcm_upscale").

After each of the first steps the denoised prediction is resized by the next factor of an even ramp
from 1 to ``total_upscale``, then noised back to the next sigma; the latent grows during sampling,
so the per-step noise must be drawn at each new size (see ``seed_stream_noise``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from engine.sampling._common import Callback, Model, Run
from engine.sampling.noise import NoiseSampler, seed_stream_noise

Resize = Callable[[Tensor, int, int], Tensor]
"""``resize(x, width, height)`` for a [B, C, H, W] latent."""


def _nearest(x: Tensor, width: int, height: int) -> Tensor:
    return F.interpolate(x, size=(height, width), mode="nearest-exact")


@torch.no_grad()
def sample_lcm_upscale(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    total_upscale: float = 2.0,
    upscale_steps: int | None = None,
    resize: Resize | None = None,
) -> Tensor:
    """LCM steps (Luo et al. 2023) with the latent resized after each of the first ``upscale_steps``.

    ``upscale_steps=None`` spreads the resizing over about half the steps (ComfyUI's default);
    ``resize`` does the resizing (nearest-exact when None; the node passes the chosen method).
    ``noise_sampler`` is called as ``noise_sampler(sigma, sigma_next, like=x)`` because x changes
    size; without one, an unseeded stream is used.
    """
    if upscale_steps is None:
        upscale_steps = max(len(sigmas) // 2 + 1, 2)
    else:
        upscale_steps = min(upscale_steps + 1, len(sigmas) + 1)
    factors = np.linspace(1.0, total_upscale, upscale_steps)[1:]
    resize = resize or _nearest
    noise = noise_sampler or seed_stream_noise(x, None)
    run = Run(model, x, extra_args, callback, None, len(sigmas) - 1)
    height, width = x.shape[-2], x.shape[-1]
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x, sigmas[i])
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        x = denoised
        if i < len(factors):
            x = resize(x, round(width * factors[i]), round(height * factors[i]))
        if sigmas[i + 1] > 0:
            x = x + sigmas[i + 1] * noise(sigmas[i], sigmas[i + 1], like=x)  # type: ignore[call-arg]
    return x
