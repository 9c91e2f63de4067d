"""Qwen-Image 2.1's VAE (`qwen_image_2.1_vae_bf16.safetensors`): a Wan-2.2-style residual VAE with RGBA
input and output, 16× spatial compression and 64 latent channels, in the original layout ComfyUI reads,
loaded into diffusers' `AutoencoderKLQwenImage21`.

Original names → diffusers': `conv1`/`conv2` → `quant_conv`/`post_quant_conv`; `{encoder,decoder}.conv1`
→ `conv_in`; `head.0`/`head.2` → `norm_out`/`conv_out`; `middle.{0,1,2}` → `mid_block.{resnets.0,
attentions.0, resnets.1}`; `encoder.downsamples.L.downsamples.M` → `down_blocks.L.resnets.M`, and its
last entry (`resample`, `time_conv`) → `down_blocks.L.downsampler`; the decoder's `upsamples` likewise;
`residual.{0,2,3,6}` → `norm1, conv1, norm2, conv2`; `shortcut` → `conv_shortcut`. The original convolutions
are causal 3-D ones one frame deep ([out, in, 1, kh, kw]); diffusers' image VAE keeps them 2-D, so the
frame axis is dropped. Widths, levels and channels are read from the shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]
MARKERS = ("encoder.conv1.weight", "encoder.downsamples.0.downsamples.0.residual.0.gamma", "conv2.weight")
RES_BLOCKS = 2
RULES = (
    (r"^conv1\.", "quant_conv."),
    (r"^conv2\.", "post_quant_conv."),
    (r"^(encoder|decoder)\.conv1\.", r"\1.conv_in."),
    (r"^(encoder|decoder)\.head\.0\.", r"\1.norm_out."),
    (r"^(encoder|decoder)\.head\.2\.", r"\1.conv_out."),
    (r"^(encoder|decoder)\.middle\.0\.", r"\1.mid_block.resnets.0."),
    (r"^(encoder|decoder)\.middle\.1\.", r"\1.mid_block.attentions.0."),
    (r"^(encoder|decoder)\.middle\.2\.", r"\1.mid_block.resnets.1."),
    (
        r"^encoder\.downsamples\.(\d+)\.downsamples\.\d+\.(resample|time_conv)\.",
        r"encoder.down_blocks.\1.downsampler.\2.",
    ),
    (r"^encoder\.downsamples\.(\d+)\.downsamples\.(\d+)\.", r"encoder.down_blocks.\1.resnets.\2."),
    (
        r"^decoder\.upsamples\.(\d+)\.upsamples\.\d+\.(resample|time_conv)\.",
        r"decoder.up_blocks.\1.upsampler.\2.",
    ),
    (r"^decoder\.upsamples\.(\d+)\.upsamples\.(\d+)\.", r"decoder.up_blocks.\1.resnets.\2."),
    (r"\.residual\.0\.", ".norm1."),
    (r"\.residual\.2\.", ".conv1."),
    (r"\.residual\.3\.", ".norm2."),
    (r"\.residual\.6\.", ".conv2."),
    (r"\.shortcut\.", ".conv_shortcut."),
)


def is_qwen21_vae(shapes: Shapes) -> bool:
    return all(m in shapes for m in MARKERS)


def diffusers_key(key: str) -> str:
    for pattern, replacement in RULES:
        key = re.sub(pattern, replacement, key)
    return key


def config(shapes: Shapes) -> dict[str, Any]:
    base = shapes["encoder.conv1.weight"][0]
    levels = len({int(m.group(1)) for k in shapes if (m := re.match(r"encoder\.downsamples\.(\d+)\.", k))})
    level = "encoder.downsamples.{}.downsamples.{}."
    mult = [shapes[level.format(i, 0) + "residual.2.weight"][0] // base for i in range(levels)]
    decoder_width = shapes["decoder.conv1.weight"][0]
    return {
        "base_dim": base,
        "decoder_base_dim": decoder_width // mult[-1],
        "z_dim": shapes["conv2.weight"][0],
        "dim_mult": mult,
        "num_res_blocks": RES_BLOCKS,
        "temperal_downsample": [
            any(k.startswith(level.format(i, RES_BLOCKS) + "time_conv.") for k in shapes)
            for i in range(levels - 1)
        ],
        "in_channels": shapes["encoder.conv1.weight"][1],
        "out_channels": shapes["decoder.head.2.weight"][0],
        "scale_factor_spatial": 2 ** (levels - 1),
    }


def _converted(state: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for key in state:
        value = state[key]
        if value.ndim == 5:
            if value.shape[2] != 1:
                raise UnsupportedModelError(
                    f"{key}: a {value.shape[2]}-frame kernel; this VAE's are one frame"
                )
            value = value[:, :, 0]
        out[diffusers_key(key)] = value
    return out


def load(state: Mapping[str, Any], dtype: Any, name: str) -> Any:
    """An `AutoencoderKLQwenImage21` from original-layout weights."""
    from diffusers import AutoencoderKLQwenImage21

    from engine.models.checkpoint import _filled

    shapes = {k: tuple(state[k].shape) for k in state}
    try:
        cfg = config(shapes)
    except (KeyError, ZeroDivisionError) as exc:
        raise UnsupportedModelError(
            f"{name}: a Qwen-Image 2.1 VAE of an unexpected topology (no {exc})"
        ) from exc
    return _filled(lambda: AutoencoderKLQwenImage21(**cfg), lambda _: _converted(state), name, dtype)
