"""KSampler's core, shared by KSampler and KSamplerAdvanced (ComfyUI's common_ksampler semantics).

Noise is drawn on the CPU from the seed (per batch index when the latent carries `batch_index`),
the latent is scaled into the model's space, the sampler runs with CFG, and every step calls one
callback that reports progress (which is also where an interrupt stops sampling) and sends a
latent preview.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import threads
from engine.context import Context
from engine.diffusion.devices import manager
from engine.diffusion.guidance import guided_model
from engine.diffusion.handles import ModelHandle
from engine.diffusion.patches import applied

PREVIEW_EVERY = 1


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
    model: ModelHandle,
    positive: list[Any],
    negative: list[Any],
    latent: dict[str, Any],
    settings: SamplerSettings,
) -> dict[str, Any]:
    """Sample a LATENT dict; returns a new LATENT dict (other keys, such as the noise mask, kept)."""
    import torch

    from engine.sampling import prepare_noise, sample, sigmas_for, slice_sigmas

    samples = latent["samples"].float()
    noise = prepare_noise(samples, settings.seed, latent.get("batch_index"))
    sigmas = sigmas_for(
        model.sampling, settings.scheduler, settings.steps, settings.denoise, settings.sampler_name
    )
    if settings.start_step is not None or settings.last_step is not None:
        sigmas = slice_sigmas(sigmas, settings.start_step, settings.last_step, settings.force_full_denoise)
    total = max(len(sigmas) - 1, 0)

    device = manager().use(model.unet)
    mask = latent.get("noise_mask")
    denoise_mask = _latent_mask(mask, samples).to(device) if mask is not None else None

    def on_step(step: dict[str, Any]) -> None:
        ctx.progress(step["i"] + 1, total)
        if step["i"] % PREVIEW_EVERY == 0:
            ctx.preview("JPEG", model.latent.preview_jpeg(step["denoised"]))

    positions = samples.shape[0] * samples.shape[-2] * samples.shape[-1]
    with (
        torch.no_grad(),
        applied((model.unet,), model.patches),
        threads.limited(threads.work_of(model.unet, positions)),
    ):
        result = sample(
            guided_model(model, _on(positive, device), _on(negative, device), settings.cfg),
            noise.to(device),
            model.latent.process_in(samples.to(device)),
            sigmas,
            settings.sampler_name,
            model_sampling=model.sampling,
            callback=on_step,
            seed=settings.seed,
            denoise_mask=denoise_mask,
            disable_noise=not settings.add_noise,
        )
    out = dict(latent)
    out["samples"] = model.latent.process_out(result).float().cpu()
    return out


def _on(conditioning: list[Any], device: Any) -> list[Any]:
    moved = []
    for cond, options in conditioning:
        options = {
            k: v.to(device) if hasattr(v, "to") and hasattr(v, "dtype") else v for k, v in options.items()
        }
        moved.append([cond.to(device), options])
    return moved


def _latent_mask(mask: Any, samples: Any) -> Any:
    """A pixel-space noise mask [B?, H, W] resized to the latent, one channel broadcast over all."""
    import torch.nn.functional as F

    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=samples.shape[2:], mode="bilinear")
    if mask.shape[0] < samples.shape[0]:
        mask = mask.repeat(samples.shape[0] // mask.shape[0] + 1, 1, 1, 1)[: samples.shape[0]]
    return mask
