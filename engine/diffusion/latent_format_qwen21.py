"""Qwen-Image 2.1's latent format: 64 channels at 1/16 of the image size, each channel normalised by the
VAE's own mean and standard deviation (the `latents_mean` / `latents_std` that diffusers'
`AutoencoderKLQwenImage21` records in its config)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from engine.diffusion.latent_formats_flow import Wan21

CHANNELS = 64


@cache
def _vae_stats() -> tuple[tuple[float, ...], tuple[float, ...]]:
    import inspect

    from diffusers import AutoencoderKLQwenImage21

    defaults = inspect.signature(AutoencoderKLQwenImage21.__init__).parameters
    return tuple(defaults["latents_mean"].default), tuple(defaults["latents_std"].default)


@dataclass(frozen=True)
class QwenImage21(Wan21):
    """Normalised per channel as Wan21's latents, with this VAE's statistics. No published RGB preview fit
    is shipped with diffusers: previews of these latents are grey."""

    scale_factor: float = 1.0
    rgb_factors: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 0.0),) * CHANNELS
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    channels: int = CHANNELS
    spacial_downscale_ratio: int = 16

    def _stats(self, latent: Any) -> tuple[Any, Any]:
        import torch

        shape = (1, self.channels) + (1,) * (latent.ndim - 2)
        mean, std = _vae_stats()
        mean_t = torch.tensor(mean, device=latent.device, dtype=latent.dtype).view(shape)
        return mean_t, torch.tensor(std, device=latent.device, dtype=latent.dtype).view(shape)
