"""Latent formats of the 16-channel VAEs: SD3's and Flux's scale and shift, and their RGB preview
projections (least-squares fits published by ComfyUI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.diffusion.latent_formats import LatentFormat

SD3_RGB = (
    (-0.0922, -0.0175, 0.0749),
    (0.0311, 0.0633, 0.0954),
    (0.1994, 0.0927, 0.0458),
    (0.0856, 0.0339, 0.0902),
    (0.0587, 0.0272, -0.0496),
    (-0.0006, 0.1104, 0.0309),
    (0.0978, 0.0306, 0.0427),
    (-0.0042, 0.1038, 0.1358),
    (-0.0194, 0.0020, 0.0669),
    (-0.0488, 0.0130, -0.0268),
    (0.0922, 0.0988, 0.0951),
    (-0.0278, 0.0524, -0.0542),
    (0.0332, 0.0456, 0.0895),
    (-0.0069, -0.0030, -0.0810),
    (-0.0596, -0.0465, -0.0293),
    (-0.1448, -0.1463, -0.1189),
)
FLUX_RGB = (
    (-0.0346, 0.0244, 0.0681),
    (0.0034, 0.0210, 0.0687),
    (0.0275, -0.0668, -0.0433),
    (-0.0174, 0.0160, 0.0617),
    (0.0859, 0.0721, 0.0329),
    (0.0004, 0.0383, 0.0115),
    (0.0405, 0.0861, 0.0915),
    (-0.0236, -0.0185, -0.0259),
    (-0.0245, 0.0250, 0.1180),
    (0.1008, 0.0755, -0.0421),
    (-0.0515, 0.0201, 0.0011),
    (0.0428, -0.0012, -0.0036),
    (0.0817, 0.0765, 0.0749),
    (-0.1264, -0.0522, -0.1103),
    (-0.0280, -0.0881, -0.0499),
    (-0.1262, -0.0982, -0.0778),
)


@dataclass(frozen=True)
class SD3(LatentFormat):
    """SD3/SD3.5 latents (ComfyUI's `latent_formats.SD3`, which packs test with isinstance)."""

    scale_factor: float = 1.5305
    rgb_factors: tuple[tuple[float, float, float], ...] = SD3_RGB
    rgb_bias: tuple[float, float, float] = (0.2394, 0.2135, 0.1925)
    channels: int = 16
    shift_factor: float = 0.0609
    taesd_decoder_name = "taesd3_decoder"


@dataclass(frozen=True)
class Flux(SD3):
    """Flux.1 latents (ComfyUI's `latent_formats.Flux`, a subclass of SD3 there too)."""

    scale_factor: float = 0.3611
    rgb_factors: tuple[tuple[float, float, float], ...] = FLUX_RGB
    rgb_bias: tuple[float, float, float] = (-0.0329, -0.0718, -0.0851)
    shift_factor: float = 0.1159
    taesd_decoder_name = "taef1_decoder"


WAN21_RGB = (
    (-0.1299, -0.1692, 0.2932),
    (0.0671, 0.0406, 0.0442),
    (0.3568, 0.2548, 0.1747),
    (0.0372, 0.2344, 0.1420),
    (0.0313, 0.0189, -0.0328),
    (0.0296, -0.0956, -0.0665),
    (-0.3477, -0.4059, -0.2925),
    (0.0166, 0.1902, 0.1975),
    (-0.0412, 0.0267, -0.1364),
    (-0.1293, 0.0740, 0.1636),
    (0.0680, 0.3019, 0.1128),
    (0.0032, 0.0581, 0.0639),
    (-0.1251, 0.0927, 0.1699),
    (0.0060, -0.0633, 0.0005),
    (0.3477, 0.2275, 0.2950),
    (0.1984, 0.0913, 0.1861),
)
# The Wan 2.1 / Qwen-Image VAE's per-channel latent statistics (its released config).
WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip


@dataclass(frozen=True)
class Wan21(LatentFormat):
    """Qwen-Image's latents (ComfyUI's `latent_formats.Wan21`): each channel normalised by the VAE's own
    mean and standard deviation; Loom keeps images as 4-D latents [B, 16, h, w] (one frame)."""

    scale_factor: float = 1.0
    rgb_factors: tuple[tuple[float, float, float], ...] = WAN21_RGB
    rgb_bias: tuple[float, float, float] = (-0.1835, -0.0868, -0.3360)
    channels: int = 16

    def _stats(self, latent: Any) -> tuple[Any, Any]:
        import torch

        shape = (1, self.channels) + (1,) * (latent.ndim - 2)
        mean = torch.tensor(WAN21_MEAN, device=latent.device, dtype=latent.dtype).view(shape)
        std = torch.tensor(WAN21_STD, device=latent.device, dtype=latent.dtype).view(shape)
        return mean, std

    def process_in(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


FLUX2_RGB = (
    (0.0058, 0.0113, 0.0073), (0.0495, 0.0443, 0.0836),
    (-0.0099, 0.0096, 0.0644), (0.2144, 0.3009, 0.3652),
    (0.0166, -0.0039, -0.0054), (0.0157, 0.0103, -0.0160),
    (-0.0398, 0.0902, -0.0235), (-0.0052, 0.0095, 0.0109),
    (-0.3527, -0.2712, -0.1666), (-0.0301, -0.0356, -0.0180),
    (-0.0107, 0.0078, 0.0013), (0.0746, 0.0090, -0.0941),
    (0.0156, 0.0169, 0.0070), (-0.0034, -0.0040, -0.0114),
    (0.0032, 0.0181, 0.0080), (-0.0939, -0.0008, 0.0186),
    (0.0018, 0.0043, 0.0104), (0.0284, 0.0056, -0.0127),
    (-0.0024, -0.0022, -0.0030), (0.1207, -0.0026, 0.0065),
    (0.0128, 0.0101, 0.0142), (0.0137, -0.0072, -0.0007),
    (0.0095, 0.0092, -0.0059), (0.0000, -0.0077, -0.0049),
    (-0.0465, -0.0204, -0.0312), (0.0095, 0.0012, -0.0066),
    (0.0290, -0.0034, 0.0025), (0.0220, 0.0169, -0.0048),
    (-0.0332, -0.0457, -0.0468), (-0.0085, 0.0389, 0.0609),
    (-0.0076, 0.0003, -0.0043), (-0.0111, -0.0460, -0.0614),
)  # fmt: skip


@dataclass(frozen=True)
class Flux2(LatentFormat):
    """Flux.2's latents (ComfyUI's `latent_formats.Flux2`): the VAE's 32 channels patchified 2×2 into 128
    at 1/16 of the image and normalised by the VAE itself, so the model's space is the latent's. The
    preview projects the 32 unpatchified channels (ComfyUI's 32 rows of factors and reshape)."""

    scale_factor: float = 1.0
    rgb_factors: tuple[tuple[float, float, float], ...] = FLUX2_RGB
    rgb_bias: tuple[float, float, float] = (-0.0329, -0.0718, -0.0851)
    channels: int = 128
    spacial_downscale_ratio: int = 16  # another family's empty latent (1/8) is halved, as newer ComfyUI's
    taesd_decoder_name = "taef2_decoder"

    def preview_jpeg(self, x0: Any, max_side: int = 512) -> bytes:
        batch, _, height, width = x0.shape
        pixels = x0.reshape(batch, 32, 2, 2, height, width).permute(0, 1, 4, 2, 5, 3)
        return super().preview_jpeg(pixels.reshape(batch, 32, height * 2, width * 2), max_side)


@dataclass(frozen=True)
class ChromaRadiance(LatentFormat):
    """Chroma Radiance's "latents" are the RGB image itself in −1..1 (ComfyUI's
    `latent_formats.ChromaRadiance`): no scaling, and the preview shows the channels as they are."""

    scale_factor: float = 1.0
    rgb_factors: tuple[tuple[float, float, float], ...] = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    channels: int = 3
    spacial_downscale_ratio: int = 1  # another family's empty latent grows to the image's size


# Z-Image and Chroma decode with Flux's VAE (ae.safetensors) and use its latent format.
FLOW_FORMATS: dict[str, LatentFormat] = {
    "sd3": SD3(),
    "flux": Flux(),
    "zimage": Flux(),
    "lumina2": Flux(),
    "chroma": Flux(),
    "chroma_radiance": ChromaRadiance(),
    "qwen_image": Wan21(),
    "flux2": Flux2(),
    "flux3": Flux2(),  # Flux 3 decodes with Flux.2's VAE
    "hidream": Flux(),
}
