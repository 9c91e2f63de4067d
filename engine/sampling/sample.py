"""Top-level sampling entry point: noise scaling, inpainting mask, sampler dispatch (ComfyUI KSAMPLER)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model
from engine.sampling.model_sampling import ModelSampling
from engine.sampling.registry import get_sampler, noise_sampler_for

# Samplers whose inpainting noise is drawn fresh from seed + 1 instead of reusing the initial noise.
_RANDOM_INPAINT_NOISE = frozenset({"ddim"})


def is_max_denoise(model_sampling: ModelSampling, sigmas: Tensor) -> bool:
    """ComfyUI's rule: sampling starts from pure noise when sigmas[0] is (at least) the model's sigma_max."""
    sigma_max, sigma = float(model_sampling.sigma_max), float(sigmas[0])
    return math.isclose(sigma_max, sigma, rel_tol=1e-5) or sigma > sigma_max


def _inpainting(
    model: Model, model_sampling: ModelSampling, mask: Tensor, latent: Tensor, noise: Tensor
) -> Model:
    """KSamplerX0Inpaint: outside the mask, x is the original latent noised to the current sigma."""
    keep = 1.0 - mask

    def masked(x: Tensor, sigma: Tensor, **extra_args: Any) -> Tensor:
        x = x * mask + model_sampling.noise_scaling(sigma, noise, latent) * keep
        return model(x, sigma, **extra_args) * mask + latent * keep

    return masked


def sample(
    model: Model,
    noise: Tensor,
    latent: Tensor,
    sigmas: Tensor,
    sampler_name: str,
    *,
    model_sampling: ModelSampling,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    seed: int | None = None,
    max_denoise: bool | None = None,
    denoise_mask: Tensor | None = None,
    disable_noise: bool = False,
    sampler_options: dict[str, Any] | None = None,
) -> Tensor:
    """Denoise ``latent`` along ``sigmas`` with the named sampler; returns the final latent.

    * ``model(x, sigma, **extra_args)`` is the denoised-prediction callable (CFG already applied).
    * The start point is ``model_sampling.noise_scaling(sigmas[0], noise, latent, max_denoise)``;
      ``max_denoise=None`` applies ComfyUI's rule (:func:`is_max_denoise`).
    * ``seed`` seeds the per-step noise of ancestral samplers (``default_noise_sampler``) and the
      Brownian tree of the SDE samplers (``brownian_tree_noise_sampler``), as ComfyUI does.
    * ``denoise_mask`` (broadcastable to the latent; 1 = regenerate, 0 = keep) keeps the area
      outside the mask at the original latent, re-noised to each step's sigma.
    * ``disable_noise`` starts from the latent with zero noise (KSamplerAdvanced add_noise=disable).
    * An empty ``sigmas`` means there is nothing to do and returns ``latent`` unchanged.
    """
    sampler = get_sampler(sampler_name, model_sampling)
    if len(sigmas) == 0:
        return latent
    sigmas = sigmas.to(device=latent.device, dtype=torch.float32)
    if disable_noise:
        noise = torch.zeros_like(latent)
    if max_denoise is None:
        max_denoise = is_max_denoise(model_sampling, sigmas)
    if denoise_mask is not None:
        inpaint_noise = noise
        if sampler_name in _RANDOM_INPAINT_NOISE:
            generator = torch.Generator(device="cpu").manual_seed((41 if seed is None else seed) + 1)
            inpaint_noise = torch.randn(noise.shape, generator=generator, device="cpu")
            inpaint_noise = inpaint_noise.to(dtype=noise.dtype, device=noise.device)
        model = _inpainting(model, model_sampling, denoise_mask.to(latent), latent, inpaint_noise)
    x = model_sampling.noise_scaling(sigmas[0], noise, latent, max_denoise)
    samples = sampler(
        model,
        x,
        sigmas,
        extra_args=extra_args,
        callback=callback,
        noise_sampler=noise_sampler_for(sampler_name, x, sigmas, seed),
        **(sampler_options or {}),
    )
    return model_sampling.inverse_noise_scaling(sigmas[-1], samples)
