"""ComfyUI's comfy.sample: seeded noise and the two sampling entry points packs call."""

from __future__ import annotations

from typing import Any

import torch

import comfy.samplers
from engine.sampling import prepare_noise as _prepare_noise

__all__ = ["fix_empty_latent_channels", "prepare_noise", "sample", "sample_custom"]


def prepare_noise(latent_image: torch.Tensor, seed: int, noise_inds: Any = None) -> torch.Tensor:
    """Noise for `latent_image` drawn on the CPU from `seed` (per batch index with `noise_inds`)."""
    inds = None if noise_inds is None else [int(i) for i in noise_inds]
    return _prepare_noise(latent_image.cpu(), seed, inds)


def fix_empty_latent_channels(model: Any, latent_image: torch.Tensor) -> torch.Tensor:
    """An all-zero latent with the wrong channel count is repeated to the model's channels."""
    channels = model.get_model_object("latent_format").latent_channels
    if latent_image.shape[1] != channels and torch.count_nonzero(latent_image) == 0:
        repeats = -(-channels // latent_image.shape[1])
        latent_image = latent_image.repeat(1, repeats, 1, 1)[:, :channels]
    return latent_image


def sample(
    model: Any,
    noise: Any,
    steps: int,
    cfg: float,
    sampler_name: str,
    scheduler: str,
    positive: Any,
    negative: Any,
    latent_image: Any,
    denoise: float = 1.0,
    disable_noise: bool = False,
    start_step: int | None = None,
    last_step: int | None = None,
    force_full_denoise: bool = False,
    noise_mask: Any = None,
    sigmas: Any = None,
    callback: Any = None,
    disable_pbar: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    """KSampler's sampling (common_ksampler's core): returns the latent in the VAE's space, on the CPU."""
    sampler = comfy.samplers.KSampler(
        model, steps, model.load_device, sampler_name, scheduler, denoise, model.model_options
    )
    samples = sampler.sample(
        noise,
        positive,
        negative,
        cfg,
        latent_image,
        start_step,
        last_step,
        force_full_denoise,
        noise_mask,
        sigmas,
        callback,
        disable_pbar,
        seed,
    )
    return samples.cpu()


def sample_custom(
    model: Any,
    noise: Any,
    cfg: float,
    sampler: Any,
    sigmas: Any,
    positive: Any,
    negative: Any,
    latent_image: Any,
    noise_mask: Any = None,
    callback: Any = None,
    disable_pbar: bool = False,
    seed: int | None = None,
) -> torch.Tensor:
    samples = comfy.samplers.sample(
        model,
        noise,
        positive,
        negative,
        cfg,
        model.load_device,
        sampler,
        sigmas,
        model.model_options,
        latent_image,
        noise_mask,
        callback,
        disable_pbar,
        seed,
    )
    return samples.cpu()
