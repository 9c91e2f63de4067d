"""VAELoader's `pixel_space` choice: a "VAE" for pixel-space models (Chroma Radiance) that only rescales.

Encoding maps an IMAGE in 0..1 to a [B, 3, H, W] latent in −1..1 and decoding maps back, clamped to 0..1 —
ComfyUI's `PixelspaceConversionVAE` with its VAE's usual input and output scaling, no compression
(downscale ratio 1). It holds one parameter, `pixel_space_vae` = 1, as ComfyUI's does, so that code which
inspects a VAE's weights or device finds something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.diffusion.latent_formats import latent_format
from engine.diffusion.vae import VAE

if TYPE_CHECKING:
    import torch

PIXEL_SPACE = "pixel_space"


def _identity_module() -> Any:
    import torch

    class PixelSpaceConversion(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.pixel_space_vae = torch.nn.Parameter(torch.tensor(1.0), requires_grad=False)

    return PixelSpaceConversion()


class PixelSpaceVAE(VAE):
    """The pass-through VAE of pixel-space models (3 channels, no spatial compression)."""

    @classmethod
    def create(cls) -> PixelSpaceVAE:
        made = cls.__new__(cls)
        made.vae, made.latent = _identity_module(), latent_format("chroma_radiance", 1.0, {})
        return made

    @property
    def downscale_ratio(self) -> int:
        return 1

    @property
    def latent_channels(self) -> int:
        return 3

    def get_sd(self) -> dict[str, torch.Tensor]:
        return {"pixel_space_vae": self.vae.pixel_space_vae.detach().clone()}

    def memory_used_encode(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        return shape[2] * shape[3] * dtype.itemsize

    def memory_used_decode(self, shape: tuple[int, ...], dtype: torch.dtype) -> int:
        return shape[2] * shape[3] * dtype.itemsize

    def _decode_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda z: z.float()

    def _encode_fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x: self.process_input(x).float()
