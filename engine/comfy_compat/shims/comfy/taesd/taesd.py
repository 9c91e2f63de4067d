"""ComfyUI's comfy.taesd.taesd building blocks of the Tiny AutoEncoder (TAESD), which packs reuse to
build their own tiny decoders: `conv`, `Clamp`, `Block`, and the `Encoder` / `Decoder` networks with
ComfyUI's layer order, so TAESD state dicts load into them. ComfyUI's `TAESD` wrapper class (paths,
scale/shift, previews) is not provided; Loom's previews do not use TAESD.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from engine.comfy_compat.shims.comfy.ops import disable_weight_init


def conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Module:
    """A 3x3 convolution keeping the spatial size (stride and bias may be passed)."""
    return disable_weight_init.Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convolutions with ReLUs between, plus a skip (1x1 when channels change), then ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out)
        )
        self.skip = disable_weight_init.Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def _stage(*layers: nn.Module) -> list[nn.Module]:
    return [*layers, Block(64, 64), Block(64, 64), Block(64, 64)]


def Encoder(latent_channels: int = 4) -> nn.Sequential:
    """Image (3 channels) to latent at 1/8 size: three stride-2 downsamplings."""
    down = [layer for _ in range(3) for layer in _stage(conv(64, 64, stride=2, bias=False))]
    return nn.Sequential(conv(3, 64), Block(64, 64), *down, conv(64, latent_channels))


def Decoder(latent_channels: int = 4) -> nn.Sequential:
    """Latent to image at 8x size: three nearest-neighbour 2x upsamplings."""
    up = [
        layer
        for _ in range(3)
        for layer in [
            Block(64, 64),
            Block(64, 64),
            Block(64, 64),
            nn.Upsample(scale_factor=2),
            conv(64, 64, bias=False),
        ]
    ]
    return nn.Sequential(Clamp(), conv(latent_channels, 64), nn.ReLU(), *up, Block(64, 64), conv(64, 3))


__all__ = ["Block", "Clamp", "Decoder", "Encoder", "conv"]
