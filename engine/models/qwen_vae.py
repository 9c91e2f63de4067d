"""Qwen-Image's VAE (`qwen_image_vae.safetensors`): Wan 2.1's causal 3-D VAE in the original layout ComfyUI
reads (`encoder.conv1`, `encoder.downsamples.N.residual.{0,2,3,6}`, `encoder.middle`, `encoder.head`,
`conv1`, `conv2`, `decoder.upsamples.N…`), converted by diffusers' `convert_wan_vae_to_diffusers` into an
`AutoencoderKLQwenImage`. The converter (and so this loader) expects the released topology: four levels
of two residual blocks each; widths and the latent size are read from the shapes.

Qwen-Image Layered's VAE (`qwen_image_layered_vae.safetensors`) is the same network on four image channels,
RGBA (diffusers' `input_channels=4`): its first and last convolutions say so.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]
MARKERS = ("encoder.conv1.weight", "decoder.upsamples.0.residual.0.gamma", "conv2.weight")
LEVELS = 4
RES_BLOCKS = 2


def is_wan_vae(shapes: Shapes) -> bool:
    return all(m in shapes for m in MARKERS)


def config(shapes: Shapes) -> dict[str, Any]:
    base = shapes["encoder.conv1.weight"][0]
    stride = RES_BLOCKS + 1  # each level: its residual blocks, then a downsample
    mult = [
        shapes[f"encoder.downsamples.{level * stride}.residual.2.weight"][0] // base
        for level in range(LEVELS)
    ]
    temporal = [
        f"encoder.downsamples.{level * stride + RES_BLOCKS}.time_conv.weight" in shapes
        for level in range(LEVELS - 1)
    ]
    return {
        "base_dim": base,
        "input_channels": shapes["encoder.conv1.weight"][1],
        "z_dim": shapes["conv2.weight"][0],
        "dim_mult": mult,
        "num_res_blocks": RES_BLOCKS,
        "attn_scales": [],
        "temperal_downsample": temporal,
    }


def load(state: Mapping[str, Any], dtype: Any, name: str) -> Any:
    """An `AutoencoderKLQwenImage` from Wan-layout weights."""
    from diffusers import AutoencoderKLQwenImage
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    from engine.models.checkpoint import _filled

    shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        cfg = config(shapes)
    except KeyError as exc:
        raise UnsupportedModelError(f"{name}: a Wan-layout VAE of an unexpected topology (no {exc})") from exc
    return _filled(
        lambda: AutoencoderKLQwenImage(**cfg),
        lambda _: convert_wan_vae_to_diffusers(dict(state)),
        name,
        dtype,
    )
