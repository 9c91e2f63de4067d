"""Latent nodes that place, blend, crop, rotate and flip latents (ComfyUI's semantics).

Positions and sizes are in pixels and divided by 8 for the latent, as in ComfyUI.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Latent, Mask, Node
from nodes.image.basic import MAX_RESOLUTION, upscale
from nodes.image.tensors import composite

POSITION = Input("In pixels; divided by 8 for the latent.", min=0, max=MAX_RESOLUTION, step=8)
ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
FLIPS = ("x-axis: vertically", "y-axis: horizontally")


class LatentComposite(Node):
    """Paste `samples_from` into `samples_to` at (x, y); a feather fades its inner edges in."""

    display_name = "Latent Composite"
    category = "latent"

    def run(
        self,
        *,
        samples_to: Annotated[Latent, Input("The latents pasted into.")],
        samples_from: Annotated[Latent, Input("The latents pasted.")],
        x: Annotated[int, POSITION] = 0,
        y: Annotated[int, POSITION] = 0,
        feather: Annotated[
            int, Input("Edge fade in pixels (multiples of 8).", min=0, max=MAX_RESOLUTION, step=8)
        ] = 0,
    ) -> Latent:
        x, y, feather = x // 8, y // 8, feather // 8
        target = samples_to["samples"].clone()
        source = samples_from["samples"][:, :, : target.shape[2] - y, : target.shape[3] - x]
        h, w = source.shape[2], source.shape[3]
        mask = _feather_mask(source, feather, y > 0, y + h < target.shape[2], x > 0, x + w < target.shape[3])
        region = target[:, :, y : y + h, x : x + w]
        target[:, :, y : y + h, x : x + w] = source * mask + region * (1 - mask)
        out = dict(samples_to)
        out["samples"] = target
        return out


def _feather_mask(source: Any, feather: int, top: bool, bottom: bool, left: bool, right: bool) -> Any:
    """Ones, ramping linearly from 1/feather to 1 over `feather` rows/columns on each flagged edge."""
    import torch

    mask = torch.ones_like(source)
    for t in range(feather):
        value = (t + 1) / feather
        if top:
            mask[:, :, t] *= value
        if bottom:
            mask[:, :, mask.shape[2] - 1 - t] *= value
        if left:
            mask[:, :, :, t] *= value
        if right:
            mask[:, :, :, mask.shape[3] - 1 - t] *= value
    return mask


class LatentCompositeMasked(Node):
    """Paste `source` into `destination` at (x, y), blended by an optional mask (resized to the source)."""

    category = "latent"

    def run(
        self,
        *,
        destination: Annotated[Latent, Input("The latents pasted into.")],
        source: Annotated[Latent, Input("The latents pasted.")],
        x: Annotated[int, POSITION] = 0,
        y: Annotated[int, POSITION] = 0,
        resize_source: Annotated[bool, Input("Resize the source to the destination first.")] = False,
        mask: Annotated[Mask | None, Input("Where to paste (1) and keep (0).")] = None,
    ) -> Latent:
        out = dict(destination)
        out["samples"] = composite(
            destination["samples"].clone(), source["samples"], x, y, mask, 8, resize_source
        )
        return out


class LatentBlend(Node):
    """samples1 · blend_factor + samples2 · (1 − blend_factor); samples2 is resized to samples1 if needed."""

    display_name = "Latent Blend"
    category = "_for_testing"

    def run(
        self,
        *,
        samples1: Annotated[Latent, Input("The first latents (weight blend_factor).")],
        samples2: Annotated[Latent, Input("The second latents (weight 1 − blend_factor).")],
        blend_factor: Annotated[float, Input("Weight of samples1.", min=0, max=1, step=0.01)] = 0.5,
    ) -> Latent:
        first, second = samples1["samples"], samples2["samples"]
        if first.shape != second.shape:
            second = upscale(second, first.shape[3], first.shape[2], "bicubic", "center")
        out = dict(samples1)
        out["samples"] = first * blend_factor + second * (1 - blend_factor)
        return out


class LatentCrop(Node):
    """Cut a rectangle out of latents; the corner is kept at least 64 pixels inside the far edges."""

    display_name = "Crop Latent"
    category = "latent/transform"

    def run(
        self,
        *,
        samples: Annotated[Latent, Input("The latents to crop.")],
        width: Annotated[int, Input("In pixels.", min=64, max=MAX_RESOLUTION, step=8)] = 512,
        height: Annotated[int, Input("In pixels.", min=64, max=MAX_RESOLUTION, step=8)] = 512,
        x: Annotated[int, POSITION] = 0,
        y: Annotated[int, POSITION] = 0,
    ) -> Latent:
        latents = samples["samples"]
        x, y = min(x // 8, latents.shape[3] - 8), min(y // 8, latents.shape[2] - 8)
        out = dict(samples)
        out["samples"] = latents[:, :, y : y + height // 8, x : x + width // 8]
        return out


class LatentRotate(Node):
    """Rotate latents clockwise by quarter turns."""

    display_name = "Rotate Latent"
    category = "latent/transform"

    def run(
        self,
        *,
        samples: Annotated[Latent, Input("The latents to rotate.")],
        rotation: Annotated[str, Input("Clockwise rotation.", choices=ROTATIONS)],
    ) -> Latent:
        import torch

        out = dict(samples)
        out["samples"] = torch.rot90(samples["samples"], k=ROTATIONS.index(rotation), dims=[3, 2])
        return out


class LatentFlip(Node):
    """Mirror latents: across the x axis (upside down) or the y axis (left to right)."""

    display_name = "Flip Latent"
    category = "latent/transform"

    def run(
        self,
        *,
        samples: Annotated[Latent, Input("The latents to flip.")],
        flip_method: Annotated[str, Input("Which axis to mirror across.", choices=FLIPS)],
    ) -> Latent:
        import torch

        out = dict(samples)
        out["samples"] = torch.flip(samples["samples"], dims=[2 if flip_method.startswith("x") else 3])
        return out
