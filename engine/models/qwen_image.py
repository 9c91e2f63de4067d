"""Qwen-Image: detection from the key layout ComfyUI's split file uses, config from shapes, loading.

ComfyUI's `qwen_image_*.safetensors` names the MMDiT's modules as diffusers' `QwenImageTransformer2DModel`
does (`img_in`, `txt_norm`, `txt_in`, `time_text_embed.timestep_embedder`, `transformer_blocks.N.{img_mod.1,
txt_mod.1, attn.{to_q, …, add_q_proj, …, norm_q, norm_added_q, …}, img_mlp.net.{0.proj,2}, txt_mlp…}`,
`norm_out.linear`, `proj_out`), so its weights load as they are; a checkpoint prefixes them with
`model.diffusion_model.`. `txt_norm` (an RMSNorm over the Qwen2.5-VL hidden states) identifies it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
MARKERS = ("txt_norm.weight", "img_in.weight", "transformer_blocks.0.img_mod.1.weight")
HEAD_DIM = 128
PATCH = 2


def prefix_of(shapes: Shapes) -> str | None:
    for prefix in PREFIXES:
        if all(prefix + m in shapes for m in MARKERS):
            return prefix
    return None


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    pattern = re.compile(re.escape(p) + r"transformer_blocks\.(\d+)\.")
    return {
        "patch_size": PATCH,
        "in_channels": in_channels,
        "out_channels": shapes[p + "proj_out.weight"][0] // (PATCH * PATCH),
        "num_layers": len({int(m.group(1)) for k in shapes if (m := pattern.match(k))}),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "guidance_embeds": False,
        "axes_dims_rope": (16, 56, 56),
    }


def converter(config: Mapping[str, Any]) -> Any:
    """The file already uses diffusers' names."""
    return lambda state: dict(state)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `QwenImageTransformer2DModel` filled from the weights under `prefix` (other keys ignored)."""
    from diffusers import QwenImageTransformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    return filled(
        lambda: QwenImageTransformer2DModel(**config),
        lambda _: dict(own),  # the file's own names: each tensor read once, here
        "Qwen-Image diffusion model",
        dtype,
    )
