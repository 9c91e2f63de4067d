"""Per-family latent conventions: the VAE scaling factor and a cheap latent → RGB preview projection.

LATENT values hold raw VAE latents (as in ComfyUI); samplers work on latents times the scaling
factor. The RGB factors are least-squares fits of each family's VAE, published by ComfyUI.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any, ClassVar

SD15_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SDXL_RGB = (
    (0.3651, 0.4232, 0.4341),
    (-0.2533, -0.0042, 0.1068),
    (0.1076, 0.1111, -0.0362),
    (-0.3165, -0.2492, -0.2188),
)
SDXL_BIAS = (0.1084, -0.0175, -0.0011)
# A checkpoint trained with its own VAE (Loom's default model) stores its projection in metadata.
RGB_METADATA_KEY = "loom.latent_rgb"


@dataclass(frozen=True)
class LatentFormat:
    scale_factor: float
    rgb_factors: tuple[tuple[float, float, float], ...] = SD15_RGB
    rgb_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    channels: int = 4
    # The flow families' VAEs are centred too: model space is (latent - shift) * scale.
    shift_factor: float = 0.0

    # ComfyUI's attribute names, read by packs (`model.latent_format.latent_rgb_factors`, …).
    latent_dimensions = 2
    taesd_decoder_name: ClassVar[str | None] = None

    @property
    def latent_channels(self) -> int:
        return self.channels

    @property
    def latent_rgb_factors(self) -> list[list[float]]:
        return [list(row) for row in self.rgb_factors]

    @property
    def latent_rgb_factors_bias(self) -> list[float] | None:
        return list(self.rgb_bias) if any(self.rgb_bias) else None

    def process_in(self, latent: Any) -> Any:
        if self.shift_factor:
            latent = latent - self.shift_factor
        return latent * self.scale_factor

    def process_out(self, latent: Any) -> Any:
        latent = latent / self.scale_factor
        return latent + self.shift_factor if self.shift_factor else latent

    def preview_jpeg(self, x0: Any, max_side: int = 512) -> bytes:
        """A JPEG of the first image of a scaled latent batch, by linear projection (no VAE)."""
        import torch
        from PIL import Image

        factors = torch.tensor(self.rgb_factors, dtype=torch.float32, device=x0.device)
        bias = torch.tensor(self.rgb_bias, dtype=torch.float32, device=x0.device)
        rgb = torch.einsum("chw,cr->hwr", x0[0].float(), factors) + bias
        array = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).cpu().numpy()
        image = Image.fromarray(array)
        if max(image.size) < 64:  # tiny latents (Loom's default model) are scaled up to be visible
            image = image.resize((image.width * 8, image.height * 8), Image.Resampling.NEAREST)
        image.thumbnail((max_side, max_side))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=85)
        return buffer.getvalue()


@dataclass(frozen=True)
class SD15(LatentFormat):
    """SD1.x and SD2.x latents (ComfyUI's `latent_formats.SD15`, which packs test with isinstance)."""

    scale_factor: float = 0.18215
    taesd_decoder_name = "taesd_decoder"


@dataclass(frozen=True)
class SDXL(LatentFormat):
    """SDXL latents (ComfyUI's `latent_formats.SDXL`)."""

    scale_factor: float = 0.13025
    rgb_factors: tuple[tuple[float, float, float], ...] = SDXL_RGB
    rgb_bias: tuple[float, float, float] = SDXL_BIAS
    taesd_decoder_name = "taesdxl_decoder"


PLAYGROUND_RGB = (
    (0.3920, 0.4054, 0.4549),
    (-0.2634, -0.0196, 0.0653),
    (0.0568, 0.1687, -0.0755),
    (-0.3112, -0.2359, -0.2076),
)
PLAYGROUND_MEAN = (-1.6574, 1.886, -1.383, 2.5155)
PLAYGROUND_STD = (8.4927, 5.9022, 6.5498, 5.2299)


@dataclass(frozen=True)
class SDXL_Playground_2_5(LatentFormat):
    """Playground v2.5's SDXL latents, normalised per channel by the VAE's latent mean and std
    (ComfyUI's `latent_formats.SDXL_Playground_2_5`, set by ModelSamplingContinuousEDM)."""

    scale_factor: float = 0.5
    rgb_factors: tuple[tuple[float, float, float], ...] = PLAYGROUND_RGB
    taesd_decoder_name = "taesdxl_decoder"

    def _stats(self, latent: Any) -> tuple[Any, Any]:
        import torch

        mean = torch.tensor(PLAYGROUND_MEAN).view(1, 4, 1, 1).to(latent.device, latent.dtype)
        std = torch.tensor(PLAYGROUND_STD).view(1, 4, 1, 1).to(latent.device, latent.dtype)
        return mean, std

    def process_in(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


def latent_format(family: str, scale_factor: float, metadata: dict[str, str]) -> LatentFormat:
    from engine.diffusion.latent_formats_flow import FLOW_FORMATS

    if family == "qwen_image21":
        from engine.diffusion.latent_format_qwen21 import QwenImage21

        return QwenImage21()
    if family in FLOW_FORMATS:  # before the SD branches: their formats are fixed, with a shift
        return FLOW_FORMATS[family]
    kind = SDXL if family.startswith("sdxl") else SD15
    if RGB_METADATA_KEY in metadata:
        stored = json.loads(metadata[RGB_METADATA_KEY])
        return kind(
            scale_factor,
            tuple(tuple(row) for row in stored["factors"]),
            tuple(stored.get("bias", (0.0, 0.0, 0.0))),
        )
    return kind(scale_factor)
