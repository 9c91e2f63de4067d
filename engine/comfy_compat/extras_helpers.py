"""Functions (not nodes) that packs import from ComfyUI's `comfy_extras.nodes_*` modules, written for
Loom; `shims/comfy_extras` adds them to the module ComfyUI defines them in."""

from __future__ import annotations

from typing import Any

import torch

from engine.diffusion.batching import repeat_to_batch
from engine.sampling.custom import DisableNoise, RandomNoise


def composite(
    destination: torch.Tensor, source: torch.Tensor, x: int, y: int, mask: torch.Tensor | None = None,
    multiplier: int = 8, resize_source: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Paste `source` [B, C, H, W] into `destination` (in place, and returned) at (x, y) given in
    pixels (`multiplier` pixels per element: 8 for latents, 1 for images), blended by `mask`;
    the part that falls outside the destination is dropped. For offsets >= 0 this is ComfyUI's
    result; for negative ones Loom crops the source where ComfyUI's slicing wraps around."""
    source = source.to(destination.device)
    if resize_source:
        source = torch.nn.functional.interpolate(source, size=destination.shape[-2:], mode="bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[-1] * multiplier, min(x, destination.shape[-1] * multiplier))
    y = max(-source.shape[-2] * multiplier, min(y, destination.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    if mask is None:
        weight = torch.ones_like(source)
    else:
        flat = mask.to(destination.device).reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
        weight = torch.nn.functional.interpolate(flat, size=source.shape[-2:], mode="bilinear")
        weight = repeat_to_batch(weight, source.shape[0])
    # Source rows/columns left of or above the destination are cut off; so is what overhangs it.
    src_left, src_top = max(0, -left), max(0, -top)
    dst_left, dst_top = max(0, left), max(0, top)
    width = min(source.shape[-1] - src_left, destination.shape[-1] - dst_left)
    height = min(source.shape[-2] - src_top, destination.shape[-2] - dst_top)
    if width <= 0 or height <= 0:
        return destination
    window = (..., slice(dst_top, dst_top + height), slice(dst_left, dst_left + width))
    cut = (..., slice(src_top, src_top + height), slice(src_left, src_left + width))
    blend = weight[cut]
    destination[window] = blend * source[cut] + (1.0 - blend) * destination[window]
    return destination


class Noise_EmptyNoise(DisableNoise):
    """ComfyUI's NOISE object that adds nothing, constructed without arguments."""


def _custom_sampler_helpers() -> dict[str, Any]:
    """The NOISE and guider classes ComfyUI defines beside its custom-sampling nodes (packs build
    them directly: `Noise_RandomNoise(seed).generate_noise(latent)`, `Guider_Basic(model)`)."""
    from engine.diffusion.custom_guiders import Guider_Basic, Guider_DualCFG, Guider_PerpNeg

    return {
        "Noise_RandomNoise": RandomNoise,
        "Noise_EmptyNoise": Noise_EmptyNoise,
        "Guider_Basic": Guider_Basic,
        "Guider_DualCFG": Guider_DualCFG,
        "Guider_PerpNeg": Guider_PerpNeg,
    }


def camera_embeddings(elevation: float, azimuth: float) -> torch.Tensor:
    """Zero123's camera vector [1, 1, 4] for a view at `elevation` and `azimuth` degrees: the polar
    offset from the horizontal view in radians (-elevation), sin and cos of the azimuth, and the
    fixed camera distance term (pi/2)."""
    elevation_t = torch.as_tensor([elevation])
    azimuth_t = torch.deg2rad(torch.as_tensor([azimuth]))
    # (90 - elevation) - 90 rather than -elevation: the same float32 rounding as ComfyUI's.
    parts = [
        torch.deg2rad((90 - elevation_t) - 90),
        torch.sin(azimuth_t),
        torch.cos(azimuth_t),
        torch.deg2rad(torch.full_like(elevation_t, 90)),
    ]
    return torch.stack(parts, dim=-1).unsqueeze(1)


HELPERS: dict[str, dict[str, Any]] = {
    "comfy_extras.nodes_mask": {"composite": composite},
    "comfy_extras.nodes_stable3d": {"camera_embeddings": camera_embeddings},
    "comfy_extras.nodes_custom_sampler": _custom_sampler_helpers(),
}
