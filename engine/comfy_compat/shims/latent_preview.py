"""ComfyUI's `latent_preview`: the sampler callback that reports progress and sends latent previews,
over Loom's preview path (the latent format's linear latent → RGB projection, sent as JPEG through
the running node's context)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import torch
from comfy.taesd.taesd import TAESD
from comfy.utils import ProgressBar
from PIL import Image

__all__ = [
    "MAX_PREVIEW_RESOLUTION",
    "TAESD",
    "Latent2RGBPreviewer",
    "LatentPreviewer",
    "TAESDPreviewerImpl",
    "get_previewer",
    "prepare_callback",
    "preview_to_image",
]  # fmt: skip

MAX_PREVIEW_RESOLUTION = 512


class LatentPreviewer:
    """Turns a denoised latent batch into a preview image (ComfyUI's (format, PIL image, size) tuple)."""

    def __init__(self, latent_format: Any) -> None:
        self.latent_format = latent_format

    def decode_latent_to_preview(self, x0: Any) -> Image.Image:
        jpeg = self.latent_format.preview_jpeg(x0, MAX_PREVIEW_RESOLUTION)
        return Image.open(io.BytesIO(jpeg))

    def decode_latent_to_preview_image(self, preview_format: str, x0: Any) -> tuple[str, Image.Image, int]:
        return preview_format, self.decode_latent_to_preview(x0), MAX_PREVIEW_RESOLUTION


def preview_to_image(image: Any) -> Image.Image:
    """An [H, W, 3] image in [-1, 1] as a PIL image (ComfyUI's preview convention)."""
    pixels = ((image.detach().float().cpu() + 1.0) / 2.0).clamp(0, 1).mul(255).round()
    return Image.fromarray(pixels.to(dtype=torch.uint8).numpy())


class TAESDPreviewerImpl(LatentPreviewer):
    """A previewer over a `comfy.taesd.taesd.TAESD` (its decoder draws the first latent of x0)."""

    def __init__(self, taesd: Any) -> None:
        self.taesd = taesd

    def decode_latent_to_preview(self, x0: Any) -> Image.Image:
        import torch

        with torch.inference_mode():
            image = self.taesd.decode(x0[:1].to(next(self.taesd.parameters()).device))[0]
        picture = preview_to_image(image.movedim(0, 2))
        picture.thumbnail((MAX_PREVIEW_RESOLUTION, MAX_PREVIEW_RESOLUTION))
        return picture


class Latent2RGBPreviewer(LatentPreviewer):
    """A previewer from explicit latent → RGB factors (rows per latent channel), as packs build one."""

    def __init__(self, latent_rgb_factors: Any, latent_rgb_factors_bias: Any = None) -> None:
        from engine.diffusion.latent_formats import LatentFormat

        factors = tuple(tuple(float(v) for v in row) for row in latent_rgb_factors)
        bias = (
            tuple(float(v) for v in latent_rgb_factors_bias)
            if latent_rgb_factors_bias is not None
            else (0.0,) * 3
        )
        super().__init__(LatentFormat(1.0, factors, bias, channels=len(factors)))  # type: ignore[arg-type]

    def decode_latent_to_preview(self, x0: Any) -> Image.Image:
        return super().decode_latent_to_preview(x0[:, :, 0] if x0.ndim == 5 else x0)


def get_previewer(device: Any, latent_format: Any) -> LatentPreviewer | None:
    """A previewer for Loom's latent formats (those with a `preview_jpeg` projection); None otherwise."""
    return LatentPreviewer(latent_format) if hasattr(latent_format, "preview_jpeg") else None


def _latent_format(model: Any) -> Any:
    """Loom's handles carry `latent`; ComfyUI-shaped models `model.latent_format`."""
    for path in (("latent",), ("model", "latent_format"), ("latent_format",)):
        value = model
        for name in path:
            value = getattr(value, name, None)
        if value is not None:
            return value
    return None


def prepare_callback(
    model: Any, steps: int, x0_output_dict: dict[str, Any] | None = None
) -> Callable[[int, Any, Any, int], None]:
    """A k-diffusion style callback(step, x0, x, total_steps): progress, a preview of x0 when the
    model's latent format has a projection, and x0 kept in `x0_output_dict["x0"]` if given."""
    previewer = get_previewer(getattr(model, "load_device", None), _latent_format(model))
    bar = ProgressBar(steps)

    def callback(step: int, x0: Any, x: Any, total_steps: int) -> None:
        if x0_output_dict is not None:
            x0_output_dict["x0"] = x0
        preview = (
            previewer.decode_latent_to_preview_image("JPEG", x0) if previewer and x0 is not None else None
        )
        bar.update_absolute(step + 1, total_steps, preview)

    return callback
