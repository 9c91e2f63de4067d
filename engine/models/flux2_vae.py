"""Flux.2's VAE (`flux2-vae.safetensors`, `full_encoder_small_decoder.safetensors`): Flux.1's autoencoder
with 32 latent channels in the original layout (`encoder.*`, `decoder.*`, `quant_conv`, `post_quant_conv`)
plus the batch-norm statistics of its patchified latent (`bn.running_mean`, `bn.running_var`, 128 each).

As ComfyUI's (and diffusers' Flux2 pipelines), the latent the rest of the graph sees is the VAE's mode
patchified 2×2 into 128 channels at 1/16 of the image and normalised by those statistics; decoding undoes
both. The decoder may be narrower than the encoder (full_encoder_small_decoder): its widths are read from
its own shapes. Loaded into diffusers' `AutoencoderKLFlux2` with diffusers' LDM key converter.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

Shapes = Mapping[str, tuple[int, ...]]
MARKERS = ("bn.running_mean", "bn.running_var", "decoder.conv_in.weight")
PATCH = 2


def is_flux2_vae(shapes: Shapes) -> bool:
    return all(m in shapes for m in MARKERS)


def _levels(shapes: Shapes, prefix: str) -> list[int]:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return sorted({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def config(shapes: Shapes) -> dict[str, Any]:
    levels = _levels(shapes, "encoder.down.")
    return {
        "in_channels": shapes["encoder.conv_in.weight"][1],
        "out_channels": shapes["decoder.conv_out.weight"][0],
        "latent_channels": shapes["decoder.conv_in.weight"][1],
        "block_out_channels": [shapes[f"encoder.down.{i}.block.0.conv2.weight"][0] for i in levels],
        "decoder_block_out_channels": [
            shapes[f"decoder.up.{i}.block.0.conv2.weight"][0] for i in _levels(shapes, "decoder.up.")
        ],
        "layers_per_block": len(_levels(shapes, "encoder.down.0.block.")),
        "down_block_types": ["DownEncoderBlock2D"] * len(levels),
        "up_block_types": ["UpDecoderBlock2D"] * len(levels),
        "mid_block_add_attention": "encoder.mid.attn_1.q.weight" in shapes,
        "use_quant_conv": "quant_conv.weight" in shapes,
        "use_post_quant_conv": "post_quant_conv.weight" in shapes,
    }


def load(state: Mapping[str, Any], dtype: Any, name: str) -> Flux2VAE:
    """The VAE in `state` (keys without a prefix) wrapped to read and write 128-channel latents."""
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from engine.models.checkpoint import _filled
    from engine.models.errors import UnsupportedModelError

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        cfg = config(shapes)
    except KeyError as exc:
        raise UnsupportedModelError(f"{name}: a Flux.2 VAE of an unexpected layout (no {exc})") from exc

    def weights(_: Any) -> dict[str, Any]:
        own = convert_ldm_vae_checkpoint(dict(state), cfg)
        for key in ("running_mean", "running_var"):
            own[f"bn.{key}"] = state[f"bn.{key}"]
        return own

    vae = _filled(lambda: AutoencoderKLFlux2(**cfg), weights, name, dtype)
    return Flux2VAE(vae).eval()


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


class Flux2VAE(torch.nn.Module):
    """`AutoencoderKLFlux2` answering `engine.diffusion.vae.VAE`'s calls with Flux.2's 128-channel latents."""

    downscale_ratio = 16

    def __init__(self, vae: Any) -> None:
        super().__init__()
        self.vae = vae
        self.config = _Config(
            tuple(vae.config.block_out_channels), int(vae.config.latent_channels) * PATCH * PATCH
        )

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        bn = self.vae.bn
        mean = bn.running_mean.view(1, -1, 1, 1).to(like.device, like.dtype)
        std = torch.sqrt(bn.running_var.view(1, -1, 1, 1) + self.vae.config.batch_norm_eps)
        return mean, std.to(like.device, like.dtype)

    def to_model_latent(self, z: torch.Tensor) -> torch.Tensor:
        """The VAE's [B, 32, h, w] latent → [B, 128, h/2, w/2], patchified and normalised."""
        batch, channels, height, width = z.shape
        z = z.reshape(batch, channels, height // PATCH, PATCH, width // PATCH, PATCH).permute(
            0, 1, 3, 5, 2, 4
        )
        z = z.reshape(batch, channels * PATCH * PATCH, height // PATCH, width // PATCH)
        mean, std = self._stats(z)
        return (z - mean) / std

    def from_model_latent(self, z: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(z)
        z = z * std + mean
        batch, channels, height, width = z.shape
        z = z.reshape(batch, channels // (PATCH * PATCH), PATCH, PATCH, height, width).permute(
            0, 1, 4, 2, 5, 3
        )
        return z.reshape(batch, channels // (PATCH * PATCH), height * PATCH, width * PATCH)

    def encode(self, x: torch.Tensor) -> _Latent:
        return _Latent(_PatchedDist(self.vae.encode(x).latent_dist, self))

    def decode(self, z: torch.Tensor) -> _Sample:
        return _Sample(self.vae.decode(self.from_model_latent(z.contiguous())).sample)


class _PatchedDist:
    def __init__(self, dist: Any, owner: Flux2VAE) -> None:
        self.dist, self.owner = dist, owner

    def mode(self) -> torch.Tensor:
        return self.owner.to_model_latent(self.dist.mode())

    def sample(self, generator: Any = None) -> torch.Tensor:
        return self.owner.to_model_latent(self.dist.sample(generator))
