"""A video VAE (Qwen-Image's Wan-style causal 3-D VAE) answering the image VAE calls that
`engine.diffusion.vae.VAE` makes: images [B, C, H, W] become one-frame videos [B, C, 1, H, W] on the
way in and back on the way out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class _Config:
    block_out_channels: tuple[int, ...]
    latent_channels: int


@dataclass
class _Sample:
    sample: torch.Tensor


@dataclass
class _Latent:
    latent_dist: Any


class FrameVAE(torch.nn.Module):
    """Wraps a diffusers video autoencoder (`AutoencoderKLQwenImage`) for single images."""

    def __init__(self, video_vae: Any) -> None:
        super().__init__()
        self.video_vae = video_vae
        levels = len(video_vae.config.dim_mult)
        self.config = _Config(tuple(video_vae.config.dim_mult[:levels]), int(video_vae.config.z_dim))

    def encode(self, x: torch.Tensor) -> _Latent:
        out = self.video_vae.encode(x.unsqueeze(2)).latent_dist
        return _Latent(_FrameDist(out))

    def decode(self, z: torch.Tensor) -> _Sample:
        return _Sample(self.video_vae.decode(z.unsqueeze(2)).sample[:, :, 0])


class _FrameDist:
    def __init__(self, dist: Any) -> None:
        self.dist = dist

    def mode(self) -> torch.Tensor:
        return self.dist.mode()[:, :, 0]

    def sample(self, generator: Any = None) -> torch.Tensor:
        return self.dist.sample(generator)[:, :, 0]


class RGBAFrameVAE(FrameVAE):
    """Qwen-Image 2.1's VAE, which reads and writes RGBA: an RGB image is encoded as opaque (alpha 1,
    +1 in the VAE's [-1, 1] range); decoded images keep their alpha channel."""

    def encode(self, x: torch.Tensor) -> _Latent:
        missing = int(self.video_vae.config.in_channels) - x.shape[1]
        if missing > 0:
            x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, missing), value=1.0)
        return super().encode(x)
