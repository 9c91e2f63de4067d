"""ComfyUI's comfy.taesd.taesd: the Tiny AutoEncoder (TAESD) building blocks packs reuse (`conv`,
`Clamp`, `Block`, `Encoder`, `Decoder`, with ComfyUI's layer order so TAESD state dicts load into
them; Loom's own networks from engine/diffusion/taesd.py) and the `TAESD` wrapper packs build
previewers from: encoder + decoder files, `decode` to [-1, 1] images and `encode` from them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.diffusion.taesd import Block, Clamp, Decoder, Encoder, conv

__all__ = ["TAESD", "Block", "Clamp", "Decoder", "Encoder", "conv"]


def _load_state(path: Any) -> dict[str, torch.Tensor]:
    from comfy.utils import load_torch_file

    state: dict[str, torch.Tensor] = load_torch_file(path, safe_load=True)
    return state


class TAESD(nn.Module):
    """Both TAESD networks; either file may be None (that half keeps random weights, as in ComfyUI)."""

    latent_magnitude = 3
    latent_shift = 0.5

    def __init__(self, encoder_path: Any = None, decoder_path: Any = None, latent_channels: int = 4) -> None:
        super().__init__()
        self.taesd_encoder = Encoder(latent_channels=latent_channels)
        self.taesd_decoder = Decoder(latent_channels=latent_channels)
        # ComfyUI's learned affine between the model's latent space and TAESD's (identity by default).
        self.vae_scale = nn.Parameter(torch.tensor(1.0))
        self.vae_shift = nn.Parameter(torch.tensor(0.0))
        if encoder_path is not None:
            self.taesd_encoder.load_state_dict(_load_state(encoder_path))
        if decoder_path is not None:
            self.taesd_decoder.load_state_dict(_load_state(decoder_path))

    @staticmethod
    def scale_latents(x: torch.Tensor) -> torch.Tensor:
        """Raw latents to [0, 1] (TAESD's storage range)."""
        return x.div(2 * TAESD.latent_magnitude).add(TAESD.latent_shift).clamp(0, 1)

    @staticmethod
    def unscale_latents(x: torch.Tensor) -> torch.Tensor:
        """[0, 1] back to raw latents."""
        return x.sub(TAESD.latent_shift).mul(2 * TAESD.latent_magnitude)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, h, w] to images [B, 3, H, W] in [-1, 1]."""
        image: torch.Tensor = self.taesd_decoder((x - self.vae_shift) * self.vae_scale)
        return image.sub(0.5).mul(2)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Images [B, 3, H, W] in [-1, 1] to latents."""
        latent: torch.Tensor = self.taesd_encoder(x * 0.5 + 0.5)
        return latent / self.vae_scale + self.vae_shift
