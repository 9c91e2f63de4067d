"""Qwen2.5-VL's vision tower, as the `qwen_2.5_vl_7b` text-encoder file carries it (Qwen-Image Edit).

The file's `visual.…` keys are transformers' `Qwen2_5_VisionTransformerPretrainedModel` names
(`patch_embed.proj`, `blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.{gate,up,down}_proj}`,
`merger.{ln_q, mlp.0, mlp.2}`), so its weights load as they are; the config comes from the shapes
(80 channels per head and a full-attention block every 8th, as the released 32-block tower has).

An image becomes tokens as ComfyUI 0.3.64 prepares it (`process_qwen2vl_images`): resized bilinearly to
multiples of 28 pixels (patch 14 × merge 2) within Qwen2-VL's pixel bounds, normalised with CLIP's mean
and std, repeated to two frames and cut into 14×14×2 patches in the merger's order. Each 2×2 group of
patches is one token of the language model; `mrope_positions` gives those tokens Qwen2-VL's multimodal
rotary positions (time, row, column), as transformers' `get_rope_index` and ComfyUI do.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]

PREFIX = "visual."
HEAD_DIM = 80
FULL_ATTENTION_EVERY = 8
WINDOW_SIZE = 112
MIN_PIXELS = 3136
MAX_PIXELS = 12845056
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)
IMAGE_PAD_ID = 151655  # <|image_pad|>: where an image's tokens go


def present(shapes: Shapes, prefix: str = "") -> bool:
    return prefix + PREFIX + "patch_embed.proj.weight" in shapes


def config(shapes: Shapes, prefix: str, out_width: int) -> dict[str, Any]:
    """`Qwen2_5_VLVisionConfig` arguments read from the tower's shapes under `prefix + "visual."`."""
    p = prefix + PREFIX
    hidden, channels, temporal, patch, _ = shapes[p + "patch_embed.proj.weight"]
    pattern = re.compile(re.escape(p) + r"blocks\.(\d+)\.")
    depth = len({int(m.group(1)) for k in shapes if (m := pattern.match(k))})
    merged = shapes[p + "merger.mlp.0.weight"][1]
    out = shapes[p + "merger.mlp.2.weight"][0]
    if out != out_width or hidden % HEAD_DIM:
        raise UnsupportedModelError(
            f"Qwen2.5-VL vision tower: {hidden} wide with {out}-wide tokens does not fit a language model "
            f"{out_width} wide with heads of {HEAD_DIM} channels"
        )
    return {
        "depth": depth,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "blocks.0.mlp.gate_proj.weight"][0],
        "num_heads": hidden // HEAD_DIM,
        "in_channels": channels,
        "patch_size": patch,
        "temporal_patch_size": temporal,
        "spatial_merge_size": math.isqrt(merged // hidden),
        "window_size": WINDOW_SIZE,
        "out_hidden_size": out,
        "fullatt_block_indexes": [i for i in range(depth) if i % FULL_ATTENTION_EVERY == 7],
        "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
    }


def build(cfg: Mapping[str, Any]) -> Any:
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    vision = Qwen2_5_VLVisionConfig(**cfg)
    vision._attn_implementation = "sdpa"
    return Qwen2_5_VisionTransformerPretrainedModel(vision)


def resized_size(height: int, width: int, factor: int) -> tuple[int, int]:
    """The (height, width) ComfyUI resizes an image to: multiples of `factor` within the pixel bounds."""
    h_bar, w_bar = round(height / factor) * factor, round(width / factor) * factor
    if h_bar * w_bar > MAX_PIXELS:
        beta = math.sqrt(height * width / MAX_PIXELS)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < MIN_PIXELS:
        beta = math.sqrt(MIN_PIXELS / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def patches(
    image: Any,
    patch: int = 14,
    temporal: int = 2,
    merge: int = 2,
    mean: tuple[float, ...] = MEAN,
    std: tuple[float, ...] = STD,
) -> tuple[Any, tuple[int, int, int]]:
    """(flattened patches [grid_h·grid_w, 3·temporal·patch²], (1, grid_h, grid_w)) of the first image of
    an IMAGE batch [B, H, W, C] (its first three channels), resized and normalised as ComfyUI does."""
    import torch
    import torch.nn.functional as F

    pixels = image[0, :, :, :3].movedim(-1, 0).float()
    height, width = resized_size(pixels.shape[1], pixels.shape[2], patch * merge)
    pixels = F.interpolate(pixels[None], size=(height, width), mode="bilinear", align_corners=False)[0]
    shift = torch.tensor(mean, device=pixels.device).view(3, 1, 1)
    scale = torch.tensor(std, device=pixels.device).view(3, 1, 1)
    pixels = ((pixels - shift) / scale).unsqueeze(0).repeat(temporal, 1, 1, 1)  # [T, C, H, W]
    grid_h, grid_w = height // patch, width // patch
    cut = pixels.reshape(1, temporal, 3, grid_h // merge, merge, patch, grid_w // merge, merge, patch)
    cut = cut.permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return cut.reshape(grid_h * grid_w, 3 * temporal * patch * patch), (1, grid_h, grid_w)


def mrope_positions(length: int, spans: list[tuple[int, int, int]]) -> Any:
    """Positions [3, length] (time, row, column) of a sequence whose image tokens occupy the spans
    (start, rows, columns) in token units: text counts on all three axes; an image's tokens sit at the
    current position plus their row and column; text after it resumes past its larger side."""
    import torch

    out = torch.empty((3, length), dtype=torch.long)
    position = 0
    cursor = 0
    for start, rows, cols in sorted(spans):
        out[:, cursor:start] = torch.arange(position, position + start - cursor)
        position += start - cursor
        size = rows * cols
        index = torch.arange(size)
        out[0, start : start + size] = position
        out[1, start : start + size] = position + index // cols
        out[2, start : start + size] = position + index % cols
        position += max(rows, cols)
        cursor = start + size
    out[:, cursor:] = torch.arange(position, position + length - cursor)
    return out
