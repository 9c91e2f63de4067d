"""ComfyUI's comfy.ldm.modules.diffusionmodules.openaimodel: its LDM UNet and the UNet's blocks.

Loom's UNet is diffusers' UNet2DConditionModel (`model.model.diffusion_model`), so `UNetModel`,
`ResBlock`, `Downsample`, `Upsample`, `TimestepBlock` and `TimestepEmbedSequential` exist only as names
(`isinstance` is False for Loom's modules; constructing one raises naming the class). ComfyUI's
module-level hooks into that UNet (`apply_control`, `forward_timestep_embed`) are not provided, since no
Loom UNet calls them: a pack replacing them would change nothing. `timestep_embedding` is the real
sinusoidal embedding (cosines then sines, as ComfyUI's).
"""

from __future__ import annotations

import torch

from engine.comfy_compat.unavailable import not_provided
from engine.diffusion.unclip import timestep_embedding as _embedding

UNetModel = not_provided(__name__, "UNetModel")
ResBlock = not_provided(__name__, "ResBlock")
Downsample = not_provided(__name__, "Downsample")
Upsample = not_provided(__name__, "Upsample")
TimestepBlock = not_provided(__name__, "TimestepBlock")
TimestepEmbedSequential = not_provided(__name__, "TimestepEmbedSequential")

__all__ = [
    "Downsample",
    "ResBlock",
    "TimestepBlock",
    "TimestepEmbedSequential",
    "UNetModel",
    "Upsample",
    "timestep_embedding",
]


def timestep_embedding(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000, repeat_only: bool = False
) -> torch.Tensor:
    """[N, dim] sinusoidal embedding of `timesteps`; with `repeat_only`, the timesteps repeated."""
    if repeat_only:
        return timesteps[:, None].repeat(1, dim)
    return _embedding(timesteps, dim, float(max_period))
