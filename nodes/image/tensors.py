"""Tensor helpers shared by the image, mask and latent nodes (ComfyUI's batch and composite rules)."""

from __future__ import annotations

from typing import Any

from engine.diffusion.batching import repeat_to_batch


def as_masks(mask: Any) -> Any:
    """A MASK of any of the shapes nodes produce ([H, W], [B, H, W], [B, 1, H, W]) as [B, H, W]."""
    return mask.reshape(-1, mask.shape[-2], mask.shape[-1])


def composite(
    destination: Any, source: Any, x: int, y: int, mask: Any | None, multiplier: int, resize_source: bool
) -> Any:
    """Paste `source` [B, C, h, w] into `destination` [B, C, H, W] (modified in place) at pixel (x, y),
    which is divided by `multiplier` (8 for latents). Where `mask` is given it blends: source·m +
    destination·(1 − m), the mask being resized to the source. A source reaching past the edges is clipped."""
    import torch
    import torch.nn.functional as F

    source = source.to(destination.device)
    if resize_source:
        source = F.interpolate(source, size=destination.shape[-2:], mode="bilinear")
    source = repeat_to_batch(source, destination.shape[0])
    x = max(-source.shape[-1] * multiplier, min(x, destination.shape[-1] * multiplier))
    y = max(-source.shape[-2] * multiplier, min(y, destination.shape[-2] * multiplier))
    left, top = x // multiplier, y // multiplier
    right, bottom = left + source.shape[-1], top + source.shape[-2]
    if mask is None:
        mask = torch.ones_like(source)
    else:
        mask = F.interpolate(
            as_masks(mask.to(destination.device)).unsqueeze(1).float(),
            size=source.shape[-2:],
            mode="bilinear",
        )
        mask = repeat_to_batch(mask, source.shape[0])
    visible_w = destination.shape[-1] - left + min(0, x)
    visible_h = destination.shape[-2] - top + min(0, y)
    mask = mask[:, :, :visible_h, :visible_w]
    portion = source[..., :visible_h, :visible_w]
    destination[..., top:bottom, left:right] = (
        mask * portion + (1 - mask) * destination[..., top:bottom, left:right]
    )
    return destination


def gaussian_kernel(size: int, sigma: float, device: Any = None) -> Any:
    """A normalised 2-D Gaussian of odd `size` whose coordinates span -1..1 across the kernel (so
    `sigma` is relative to the kernel's radius, as ComfyUI's blur and sharpen define it)."""
    import torch

    axis = torch.linspace(-1, 1, size, device=device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    kernel = torch.exp(-(xx * xx + yy * yy) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def window_extreme(images: Any, size: int, largest: bool) -> Any:
    """Max (dilation) or min (erosion) of each [B, C, H, W] pixel's `size`×`size` neighbourhood, pixels
    outside the image ignored. For an even size the erosion window starts size//2 before the pixel and
    the dilation window size//2 after it (the dilation reflects the window about its origin, as kornia's
    morphology, which ComfyUI uses, does)."""
    import torch.nn.functional as F

    before, after = size // 2, size - size // 2 - 1
    if largest:
        before, after = after, before
    sign = 1.0 if largest else -1.0
    padded = F.pad(sign * images, (before, after, before, after), value=-float("inf"))
    return sign * F.max_pool2d(padded, kernel_size=size, stride=1)
