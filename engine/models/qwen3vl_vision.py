"""Qwen3-VL's vision tower, as Qwen-Image 2.1's `qwen3vl_8b` text-encoder file carries it (`visual.…`).

The names are transformers' `Qwen3VLVisionModel`'s (`patch_embed.proj`, `pos_embed`, `blocks.N.{norm1,
norm2, attn.{qkv,proj}, mlp.linear_fc{1,2}}`, `merger.{norm,linear_fc1,linear_fc2}` and the DeepStack
mergers `deepstack_merger_list.N.…`, whose features are added to the language model's first layers at the
image tokens). Widths and depth come from the shapes; the heads (16) and which blocks feed the DeepStack
mergers ([8, 16, 24] for the 27-block tower, [5, 11, 17] for 24 blocks, else evenly spaced) are the
released models', as ComfyUI fixes them. Images are cut into 16-pixel patches normalised to [-1, 1].
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]
PREFIX = "visual."
HEADS = 16
MEAN = STD = (0.5, 0.5, 0.5)
DEEPSTACK = {27: [8, 16, 24], 24: [5, 11, 17]}


def present(shapes: Shapes, prefix: str = "") -> bool:
    return prefix + PREFIX + "deepstack_merger_list.0.norm.weight" in shapes


def _count(shapes: Shapes, pattern: str) -> int:
    regex = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := regex.match(k))})


def config(shapes: Shapes, prefix: str, out_width: int) -> dict[str, Any]:
    p = prefix + PREFIX
    hidden, _, temporal, patch, _ = shapes[p + "patch_embed.proj.weight"]
    depth = _count(shapes, re.escape(p) + r"blocks\.(\d+)\.")
    stacks = _count(shapes, re.escape(p) + r"deepstack_merger_list\.(\d+)\.")
    merged = shapes[p + "merger.linear_fc1.weight"][1]
    return {
        "depth": depth,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "blocks.0.mlp.linear_fc1.weight"][0],
        "num_heads": HEADS,
        "patch_size": patch,
        "temporal_patch_size": temporal,
        "spatial_merge_size": round((merged // hidden) ** 0.5),
        "out_hidden_size": out_width,
        "num_position_embeddings": shapes[p + "pos_embed.weight"][0],
        "deepstack_visual_indexes": DEEPSTACK.get(
            depth, [depth * (i + 1) // (stacks + 1) for i in range(stacks)]
        ),
    }


def build(cfg: Mapping[str, Any]) -> Any:
    from transformers import Qwen3VLVisionConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionModel

    vision = Qwen3VLVisionConfig(**cfg)
    vision._attn_implementation = "sdpa"
    return Qwen3VLVisionModel(vision)


def mrope_section(head_dim: int) -> list[int]:
    """Qwen3-VL's rotary pairs per (time, row, column) axis: [24, 20, 20] of 64; test-sized heads keep the
    proportions."""
    pairs = head_dim // 2
    side = pairs * 20 // 64
    return [pairs - 2 * side, side, side]


def build_encoder(text_cfg: Mapping[str, Any], vision: Mapping[str, Any] | None) -> Any:
    """An LLMEncoder over transformers' `Qwen3VLTextModel` (multimodal rotary positions, DeepStack inputs),
    read before its final norm, with the vision tower when the file has one."""
    from transformers import Qwen3VLTextConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLTextModel

    from engine.diffusion.llm_encoder import LLMEncoder

    cfg = dict(text_cfg)
    theta = cfg.pop("rope_theta")
    cfg["rope_parameters"] = {
        "rope_type": "default",
        "rope_theta": theta,
        "mrope_section": mrope_section(cfg["head_dim"]),
        "mrope_interleaved": True,
    }
    text = Qwen3VLTextConfig(**cfg)
    text._attn_implementation = "sdpa"
    visual = None if vision is None else build(vision)
    return LLMEncoder(Qwen3VLTextModel(text), visual, final_norm=False)
