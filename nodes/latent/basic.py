"""Latent nodes. A LATENT is a dict: "samples" [batch, 4, height/8, width/8] of raw VAE latents,
optionally "noise_mask" (1 where to regenerate) and "batch_index"."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Latent, Mask, Node
from nodes.image.basic import CROP_METHODS, MAX_RESOLUTION, fill_aspect, upscale

LATENT_UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "bislerp")
PIXELS = Input("In pixels; the latent is 1/8 of it.", min=16, max=MAX_RESOLUTION, step=8)
METHOD = Input("How values are resampled.", choices=LATENT_UPSCALE_METHODS)
LATENTS = Input("The latents to resize.")


class EmptyLatentImage(Node):
    """A batch of empty latents to start text-to-image sampling from."""

    display_name = "Empty Latent Image"
    category = "latent"

    def run(
        self,
        width: Annotated[int, PIXELS] = 512,
        height: Annotated[int, PIXELS] = 512,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
    ) -> Latent:
        import torch

        return {"samples": torch.zeros([batch_size, 4, height // 8, width // 8])}


def _resized(samples: dict, width: int, height: int, method: str, crop: str) -> dict:
    out = dict(samples)
    out["samples"] = upscale(samples["samples"], width, height, method, crop)
    return out


class LatentUpscale(Node):
    """Resize latents to a size in pixels; 0 for one side keeps the aspect ratio."""

    display_name = "Upscale Latent"
    category = "latent"

    def run(
        self,
        samples: Annotated[Latent, LATENTS],
        upscale_method: Annotated[str, METHOD] = "nearest-exact",
        width: Annotated[int, Input("Target width in pixels.", min=0, max=MAX_RESOLUTION, step=8)] = 512,
        height: Annotated[int, Input("Target height in pixels.", min=0, max=MAX_RESOLUTION, step=8)] = 512,
        crop: Annotated[
            str, Input("Crop to the target aspect ratio first.", choices=CROP_METHODS)
        ] = "disabled",
    ) -> Latent:
        old_h, old_w = samples["samples"].shape[2], samples["samples"].shape[3]
        if width == 0 and height == 0:
            return samples
        return _resized(samples, *fill_aspect(old_w, old_h, width // 8, height // 8), upscale_method, crop)


class LatentUpscaleBy(Node):
    """Resize latents by a factor."""

    display_name = "Upscale Latent By"
    category = "latent"

    def run(
        self,
        samples: Annotated[Latent, LATENTS],
        upscale_method: Annotated[str, METHOD] = "nearest-exact",
        scale_by: Annotated[float, Input("The factor.", min=0.01, max=8.0, step=0.01)] = 1.5,
    ) -> Latent:
        height, width = samples["samples"].shape[2], samples["samples"].shape[3]
        return _resized(
            samples, round(width * scale_by), round(height * scale_by), upscale_method, "disabled"
        )


class SetLatentNoiseMask(Node):
    """Only regenerate where the mask is 1 when these latents are sampled (inpainting)."""

    display_name = "Set Latent Noise Mask"
    category = "latent/inpaint"

    def run(
        self,
        samples: Annotated[Latent, Input("The latents.")],
        mask: Annotated[Mask, Input("1 where to regenerate.")],
    ) -> Latent:
        out = dict(samples)
        out["noise_mask"] = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        return out
