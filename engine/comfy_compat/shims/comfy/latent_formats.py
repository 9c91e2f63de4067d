"""ComfyUI's comfy.latent_formats: each model family's latent scaling and preview projection.

`SD15` and `SDXL` are the classes Loom's loaders attach to models (`model.latent_format`), so a pack's
`isinstance(latent_format, comfy.latent_formats.SDXL)` sees a real SDXL model; `SD3` and `Flux` are the
flow families' formats (engine.diffusion.latent_formats_flow). The other formats carry their scaling
for packs that convert latents; Loom loads no model of those families.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.latent_formats import SD15, SDXL, LatentFormat
from engine.diffusion.latent_formats_flow import SD3, Flux

__all__ = ["SD3", "SD15", "SDXL", "SD_X4", "Flux", "LatentFormat", "SDXL_Playground_2_5"]


class _Scaled:
    """A latent format given by its scale (and shift) alone; no RGB preview factors in Loom."""

    scale_factor = 1.0
    shift_factor = 0.0
    latent_channels = 4
    latent_dimensions = 2
    latent_rgb_factors: list[list[float]] | None = None
    latent_rgb_factors_bias: list[float] | None = None
    taesd_decoder_name: str | None = None

    def process_in(self, latent: Any) -> Any:
        return (latent - self.shift_factor) * self.scale_factor

    def process_out(self, latent: Any) -> Any:
        return latent / self.scale_factor + self.shift_factor


class SDXL_Playground_2_5(_Scaled):
    """Playground v2.5: per-channel mean and std around a 0.5 scale."""

    scale_factor = 0.5
    _mean = (-1.6574, 1.886, -1.383, 2.5155)
    _std = (8.4927, 5.9022, 6.5498, 5.2299)

    def _stats(self, latent: Any) -> tuple[Any, Any]:
        import torch

        def shaped(values: tuple[float, ...]) -> Any:
            return torch.tensor(values).view(1, 4, 1, 1).to(latent.device, latent.dtype)

        return shaped(self._mean), shaped(self._std)

    def process_in(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return (latent - mean) * self.scale_factor / std

    def process_out(self, latent: Any) -> Any:
        mean, std = self._stats(latent)
        return latent * std / self.scale_factor + mean


class SD_X4(_Scaled):
    scale_factor = 0.08333
