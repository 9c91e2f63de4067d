"""Stable Diffusion 3 / 3.5 (MMDiT, MMDiT-X): detection from ComfyUI's keys, config from shapes, loading.

ComfyUI's split diffusion-model file holds the MMDiT under its original names (`joint_blocks.N.x_block…`,
`x_embedder`, `context_embedder`, `y_embedder`, `t_embedder`, `final_layer`, `pos_embed`); an all-in-one
checkpoint prefixes them with `model.diffusion_model.` and adds the VAE (`first_stage_model.`) and text
encoders (`text_encoders.clip_l|clip_g|t5xxl.transformer.`). diffusers' converter turns the MMDiT into an
`SD3Transformer2DModel` whose config is read from the shapes, so nothing is fetched from the hub.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from engine.models.flux import marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKER = "joint_blocks.0.x_block.attn.qkv.weight"
# ComfyUI's MMDiT uses 64 channels per attention head (SD3 medium 24 heads, SD3.5 large 38).
HEAD_DIM = 64


def prefix_of(shapes: Shapes) -> str | None:
    """The key prefix of an MMDiT in `shapes`, or None when there is none."""
    return marked_prefix(shapes, (MARKER, "x_embedder.proj.weight"))


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """`SD3Transformer2DModel` arguments for the MMDiT under `prefix`."""
    p = prefix
    hidden, in_channels, patch, _ = shapes[p + "x_embedder.proj.weight"]
    blocks = sorted(
        {int(m.group(1)) for k in shapes if (m := re.match(re.escape(p) + r"joint_blocks\.(\d+)\.", k))}
    )
    dual = tuple(i for i in blocks if p + f"joint_blocks.{i}.x_block.attn2.qkv.weight" in shapes)
    final = shapes[p + "final_layer.linear.weight"][0]
    return {
        "sample_size": 128,
        "patch_size": patch,
        "in_channels": in_channels,
        "num_layers": len(blocks),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": shapes[p + "context_embedder.weight"][1],
        "caption_projection_dim": shapes[p + "context_embedder.weight"][0],
        "pooled_projection_dim": shapes[p + "y_embedder.mlp.0.weight"][1],
        "out_channels": final // (patch * patch),
        "pos_embed_max_size": math.isqrt(shapes[p + "pos_embed"][1]),
        "dual_attention_layers": dual,
        "qk_norm": "rms_norm" if p + "joint_blocks.0.x_block.attn.ln_q.weight" in shapes else None,
    }


def variant(config: Mapping[str, Any]) -> str:
    """A name for messages: SD3.5 has qk-norm (and MMDiT-X dual attention in medium), SD3 has neither."""
    if config["dual_attention_layers"]:
        return "SD3.5 medium (MMDiT-X)"
    return "SD3.5" if config["qk_norm"] else "SD3"


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """An `SD3Transformer2DModel` filled from the MMDiT weights under `prefix` (other keys ignored)."""
    from diffusers import SD3Transformer2DModel
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    return filled(
        lambda: SD3Transformer2DModel(**config),
        # diffusers' converter pops what it takes: give it a dict (each tensor read once, here)
        lambda _: convert_sd3_transformer_checkpoint_to_diffusers(dict(own)),
        "SD3 diffusion model",
        dtype,
    )


def converter(config: Mapping[str, Any]) -> Any:
    """Reference-layout (prefix-free) MMDiT weights → diffusers names (for LoRA key maps)."""
    from diffusers.loaders.single_file_utils import convert_sd3_transformer_checkpoint_to_diffusers

    return lambda state: convert_sd3_transformer_checkpoint_to_diffusers(dict(state))
