"""A video VAE (Qwen-Image's Wan-style causal 3-D VAE) answering the image VAE calls that
`engine.diffusion.vae.VAE` makes: images [B, C, H, W] become one-frame videos [B, C, 1, H, W] on the
way in and back on the way out. Latents with frames [B, C, T, h, w] (Qwen-Image Layered's image and
layers) decode frame by frame, each its own one-frame video as diffusers' layered pipeline decodes them, into
T images per sample."""

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

    @property
    def image_channels(self) -> int:
        """3 (RGB), or 4 for the RGBA VAEs of Qwen-Image Layered (`input_channels`) and Qwen-Image 2.1
        (`in_channels`); `engine.diffusion.vae.VAE` gives an RGB image an opaque alpha for them."""
        config = self.video_vae.config
        return int(config.get("input_channels", config.get("in_channels", 3)))

    def decode(self, z: torch.Tensor) -> _Sample:
        if z.ndim == 5:  # frames into the batch: [B, C, T, h, w] → [B·T, C, h, w]
            z = z.movedim(2, 1).reshape(-1, z.shape[1], *z.shape[3:])
        return _Sample(self.video_vae.decode(z.unsqueeze(2)).sample[:, :, 0])


class _FrameDist:
    def __init__(self, dist: Any) -> None:
        self.dist = dist

    def mode(self) -> torch.Tensor:
        return self.dist.mode()[:, :, 0]

    def sample(self, generator: Any = None) -> torch.Tensor:
        return self.dist.sample(generator)[:, :, 0]
