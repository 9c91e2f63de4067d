"""Qwen-Image 2.1: detection from the key layout of ComfyUI's `qwen_image_2.1*.safetensors`, config from
shapes, loading into diffusers' `QwenImage21Transformer2DModel`.

The file names its modules as diffusers does (`img_in`, `txt_in.{text_norm,in_layer,out_layer}`,
`time_text_embed.timestep_embedder.linear_{1,2}`, one shared `modulation.1`, `transformer_blocks.N.{attn.
{to_q,to_k,to_v,to_out.0,norm_q,norm_k}, img_mlp.{gate_up,out}}`, `norm_out.linear`, `proj_out`) except that
ComfyUI fuses each block's SwiGLU gate and up projections into one `img_mlp.gate_up` matrix, gate rows
first; diffusers' `convert_qwen_image21_transformer_checkpoint_to_diffusers` splits it back.
`txt_in.text_norm.weight` (a zero-centred RMSNorm over the Qwen3-VL hidden states) identifies it;
Qwen-Image 1 has `txt_norm` there. Latents are 64 channels at 1/16 of the image size, one token each.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models.flux import marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("txt_in.text_norm.weight", "img_in.weight", "modulation.1.weight")
HEAD_DIM = 128


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def _mlp_hidden(shapes: Shapes, p: str) -> int:
    fused = shapes.get(p + "transformer_blocks.0.img_mlp.gate_up.weight")
    return fused[0] // 2 if fused is not None else shapes[p + "transformer_blocks.0.img_mlp.proj.weight"][0]


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    head_dim = shapes[p + "transformer_blocks.0.attn.norm_q.weight"][0]
    pattern = re.compile(re.escape(p) + r"transformer_blocks\.(\d+)\.")
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": shapes[p + "proj_out.weight"][0],
        "num_layers": len({int(m.group(1)) for k in shapes if (m := pattern.match(k))}),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "context_in_dim": shapes[p + "txt_in.in_layer.weight"][1],
        "mlp_ratio": _mlp_hidden(shapes, p) // hidden,
        "axes_dims_rope": _rope_axes(head_dim),
    }


def _rope_axes(head_dim: int) -> tuple[int, int, int]:
    """The released (16, 56, 56) split of 128 channels; test-sized heads keep its proportions (in pairs)."""
    if head_dim == HEAD_DIM:
        return (16, 56, 56)
    frame = max(2, (head_dim // 8) // 2 * 2)
    side = (head_dim - frame) // 2 // 2 * 2
    return (head_dim - 2 * side, side, side)


def converter(config: Mapping[str, Any]) -> Any:
    """ComfyUI's names → diffusers' (the fused SwiGLU split)."""
    from diffusers.loaders.single_file_utils import convert_qwen_image21_transformer_checkpoint_to_diffusers

    return lambda state: convert_qwen_image21_transformer_checkpoint_to_diffusers(dict(state))


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `QwenImage21Transformer2DModel` filled from the weights under `prefix` (other keys ignored; int8
    ConvRot files arrive dequantised, engine.models.flow_families.build_model)."""
    from diffusers import QwenImage21Transformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    convert = converter(config)
    return filled(
        lambda: QwenImage21Transformer2DModel(**config),
        lambda _: convert(own),
        "Qwen-Image 2.1 diffusion model",
        dtype,
    )
