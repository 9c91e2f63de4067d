"""KSampler's core, shared by KSampler and KSamplerAdvanced (ComfyUI's common_ksampler semantics).

Noise is drawn on the CPU from the seed (per batch index when the latent carries `batch_index`),
and a CFGGuider samples: it applies the MODEL's patches, scales the latent into the model's space
and runs the sampler with CFG and every model_options hook; every step calls one callback that
reports progress (which is also where an interrupt stops sampling) and sends a latent preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.context import Context
from engine.diffusion.guider import CFGGuider
from engine.diffusion.model_patcher import ModelPatcher
from engine.diffusion.taesd import preview_jpeg

PREVIEW_EVERY = 1
EMPTY_LATENT_RATIO = 8  # EmptyLatentImage's grid: 1/8 of the image


def fix_empty_latent_channels(model: Any, samples: Any) -> Any:
    """An all-zero latent made for another family (EmptyLatentImage's 4 channels before a 16-channel
    model) as zeros with the model's channel count, as ComfyUI's samplers do; others are left alone."""
    import torch

    fmt = model.get_model_object("latent_format")
    channels = getattr(fmt, "latent_channels", samples.shape[1])
    # A model whose VAE compresses 16× (Qwen-Image 2.1) gets another family's 8× grid (EmptyLatentImage's)
    # halved too; a latent already in the model's channels is already at its scale.
    ratio = getattr(fmt, "spacial_downscale_ratio", EMPTY_LATENT_RATIO)
    if samples.shape[1] != channels and torch.count_nonzero(samples) == 0:
        size = [max(1, round(side * EMPTY_LATENT_RATIO / ratio)) for side in samples.shape[2:]]
        return torch.zeros((samples.shape[0], channels, *size), dtype=samples.dtype)
    return samples


@dataclass(frozen=True)
class SamplerSettings:
    seed: int
    steps: int
    cfg: float
    sampler_name: str
    scheduler: str
    denoise: float = 1.0
    add_noise: bool = True
    start_step: int | None = None
    last_step: int | None = None
    force_full_denoise: bool = False


def run_ksampler(
    ctx: Context,
    model: ModelPatcher,
    positive: list[Any],
    negative: list[Any],
    latent: dict[str, Any],
    settings: SamplerSettings,
) -> dict[str, Any]:
    """Sample a LATENT dict through a CFGGuider; returns a new LATENT dict (other keys, such as the
    noise mask, kept)."""
    import torch

    from engine.sampling import prepare_noise, sigmas_for, slice_sigmas

    samples = fix_empty_latent_channels(model, latent["samples"].float())
    noise = prepare_noise(samples, settings.seed, latent.get("batch_index"))
    if not settings.add_noise:
        noise = torch.zeros_like(samples)
    sampling = model.get_model_object("model_sampling")
    sigmas = sigmas_for(sampling, settings.scheduler, settings.steps, settings.denoise, settings.sampler_name)
    if settings.start_step is not None or settings.last_step is not None:
        sigmas = slice_sigmas(sigmas, settings.start_step, settings.last_step, settings.force_full_denoise)
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(settings.cfg)
    result = guider.sample(
        noise,
        samples,
        settings.sampler_name,
        sigmas,
        denoise_mask=latent.get("noise_mask"),
        callback=progress_callback(ctx, model),
        seed=settings.seed,
    )
    out = dict(latent)
    out["samples"] = result.float().cpu()
    return out


def progress_callback(ctx: Context, model: ModelPatcher) -> Any:
    """ComfyUI's per-step callback that reports progress (where an interrupt stops sampling) and
    sends a latent preview when the prompt's client asked for previews."""

    def on_step(step: int, denoised: Any, x: Any, total: int) -> None:
        ctx.progress(step + 1, total)
        if ctx.previews and step % PREVIEW_EVERY == 0:
            ctx.preview("JPEG", preview_jpeg(model.latent, denoised, ctx.preview_method))

    return on_step
