"""Flux 3 (Klein: base, and the step-distilled flow map): detection from the reference key layout of the
files ComfyUI users have (`flux3-image-klein[-base]-{bf16,int8-convrot}`), config from shapes, loading into
diffusers' `Flux3Transformer2DModel`.

Keys (Black Forest Labs' names, without biases): `emb_in.{image,image_cond}`, `txt_in`,
`time_in.{in,out}_layer` (and `ref_time_in.…` in the distilled flow map, the embedder of the timestep each
step jumps to), `{early,single}_stream_modulations.{image,image_cond,txt}.lin`,
`content_mode_blocks.{image,image_cond}.N.…` and `txt_mode_blocks.N.…` (per-mode blocks),
`single_blocks.N.…` (joint blocks), each block `{q,k,v}_proj`, `attn_out`, `norm.{query,key}_norm.scale`,
`mlp_in`, `mlp_out`; `final_layer.image.{linear,adaLN_modulation.1}`. An all-in-one file prefixes them
with `model.diffusion_model.`. Widths, block counts and the MLP ratio are read from the shapes; heads are
128 wide with rotary axes (32, 32, 32, 32) over (frame, row, column, text position) in the released model
(test-sized heads split theirs in four). The conversion is diffusers' own; int8 ConvRot matrices are
dequantised on load (engine.models.flow_families.build_model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models.flux import count_blocks, marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("early_stream_modulations.image.lin.weight", "emb_in.image.weight", "txt_in.weight")
DISTILLED_MARKER = "ref_time_in.in_layer.weight"
HEAD_DIM = 128
ROPE_THETA = 10000


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def is_distilled(shapes: Shapes, prefix: str) -> bool:
    """The step-distilled flow map (`flux3-image-klein`), not the base model (`…-klein-base`)."""
    return prefix + DISTILLED_MARKER in shapes


def variant(shapes: Shapes, prefix: str) -> str:
    return "Flux 3 Klein (distilled)" if is_distilled(shapes, prefix) else "Flux 3 Klein base"


def _head_dim(shapes: Shapes, prefix: str) -> int:
    return shapes[prefix + "single_blocks.0.norm.query_norm.scale"][0]


def _axes(head_dim: int) -> tuple[int, int, int, int]:
    """(32, 32, 32, 32) for 128-wide heads; smaller test heads in four equal (even) parts."""
    part = head_dim // 4 // 2 * 2
    return (head_dim - 3 * part, part, part, part)


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "emb_in.image.weight"]
    head_dim = _head_dim(shapes, p)
    mlp_in = shapes[p + "single_blocks.0.mlp_in.weight"][0]  # SwiGLU: gate and value rows
    return {
        "in_channels": in_channels,
        "cond_in_channels": shapes.get(p + "emb_in.image_cond.weight", (hidden, in_channels))[1],
        "num_layers": count_blocks(shapes, p, "txt_mode_blocks"),
        "num_single_layers": count_blocks(shapes, p, "single_blocks"),
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "timestep_channels": shapes[p + "time_in.in_layer.weight"][1],
        "mlp_ratio": mlp_in / 2 / hidden,
        "axes_dims_rope": _axes(head_dim),
        "rope_theta": ROPE_THETA,
        "flow_map": is_distilled(shapes, p),
    }


def converter(config: Mapping[str, Any]) -> Any:
    """Black Forest Labs' names → diffusers' (diffusers' converter; it swaps the output adaLN's halves)."""
    from diffusers.loaders.single_file_utils import convert_flux3_transformer_checkpoint_to_diffusers

    return lambda state: dict(convert_flux3_transformer_checkpoint_to_diffusers(dict(state)))


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `Flux3Transformer2DModel` filled from the Flux 3 weights under `prefix` (other keys ignored)."""
    from diffusers import Flux3Transformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    convert = converter(config)
    return filled(
        lambda: Flux3Transformer2DModel(**config),
        lambda _: convert(own),
        "Flux 3 diffusion model",
        dtype,
    )
