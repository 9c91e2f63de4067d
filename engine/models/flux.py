"""Flux.1 (dev, schnell): detection from the reference key layout ComfyUI uses, config from shapes, loading.

Keys: `img_in`, `txt_in`, `time_in`, `vector_in`, `guidance_in` (dev only: the distilled guidance
embedding), `double_blocks.N.{img,txt}_{mod,attn,mlp}…`, `single_blocks.N.{linear1,linear2,norm,modulation}`,
`final_layer`; checkpoints prefix them with `model.diffusion_model.`. The conversion to diffusers'
`FluxTransformer2DModel` is written here because diffusers' own converter fixes the width at 3072; this
one reads every width from the shapes (the heads are 128 wide, as in ComfyUI's detection).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
MARKERS = ("double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight")
HEAD_DIM = 128
MLP_RATIO = 4


def marked_prefix(shapes: Shapes, markers: tuple[str, ...]) -> str | None:
    """The key prefix (all-in-one, bare diffusion model…) under which every marker key is present."""
    for prefix in PREFIXES:
        if all(prefix + m in shapes for m in markers):
            return prefix
    return None


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def variant(shapes: Shapes, prefix: str) -> str:
    """dev has the guidance embedding; schnell (timestep-distilled) has none."""
    return "Flux.1 dev" if prefix + "guidance_in.in_layer.weight" in shapes else "Flux.1 schnell"


def count_blocks(shapes: Shapes, prefix: str, group: str) -> int:
    """How many numbered blocks `prefix + group + ".N."` the keys hold (the distinct N)."""
    pattern = re.compile(re.escape(prefix + group) + r"\.(\d+)\.")
    return len({int(m.group(1)) for k in shapes if (m := pattern.match(k))})


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": shapes[p + "final_layer.linear.weight"][0],
        "num_layers": count_blocks(shapes, p, "double_blocks"),
        "num_single_layers": count_blocks(shapes, p, "single_blocks"),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "pooled_projection_dim": shapes[p + "vector_in.in_layer.weight"][1],
        "guidance_embeds": p + "guidance_in.in_layer.weight" in shapes,
        "axes_dims_rope": (16, 56, 56),
    }


def _swap(weight: Any) -> Any:
    import torch

    shift, scale = weight.chunk(2, dim=0)
    return torch.cat([scale, shift], dim=0)


_EMBEDDERS = {
    "time_in": "time_text_embed.timestep_embedder",
    "vector_in": "time_text_embed.text_embedder",
    "guidance_in": "time_text_embed.guidance_embedder",
}
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
_DOUBLE_NORMS = {
    "img_attn.norm.query_norm.scale": "attn.norm_q.weight",
    "img_attn.norm.key_norm.scale": "attn.norm_k.weight",
    "txt_attn.norm.query_norm.scale": "attn.norm_added_q.weight",
    "txt_attn.norm.key_norm.scale": "attn.norm_added_k.weight",
}


def to_diffusers(state: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Reference-layout Flux weights (no prefix) under diffusers' names."""
    out: dict[str, Any] = {}
    for p in ("weight", "bias"):
        out[f"x_embedder.{p}"] = state[f"img_in.{p}"]
        out[f"context_embedder.{p}"] = state[f"txt_in.{p}"]
        out[f"proj_out.{p}"] = state[f"final_layer.linear.{p}"]
        out[f"norm_out.linear.{p}"] = _swap(state[f"final_layer.adaLN_modulation.1.{p}"])
        for ours, theirs in _EMBEDDERS.items():
            if f"{ours}.in_layer.{p}" in state:
                out[f"{theirs}.linear_1.{p}"] = state[f"{ours}.in_layer.{p}"]
                out[f"{theirs}.linear_2.{p}"] = state[f"{ours}.out_layer.{p}"]
    out.update(blocks_to_diffusers(state, config, modulated=True))
    return out


def blocks_to_diffusers(
    state: Mapping[str, Any], config: Mapping[str, Any], modulated: bool
) -> dict[str, Any]:
    """The double and single transformer blocks under diffusers' names; Flux's blocks carry their own
    modulation layers (`modulated`), Chroma's take theirs from its approximator."""
    hidden = config["num_attention_heads"] * config["attention_head_dim"]
    double = {k: v for k, v in _DOUBLE.items() if modulated or "_mod." not in k}
    out: dict[str, Any] = {}
    for i in range(config["num_layers"]):
        src, dst = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for p in ("weight", "bias"):
            for ours, theirs in double.items():
                out[f"{dst}{theirs}.{p}"] = state[f"{src}{ours}.{p}"]
            for stream, names in (
                ("img_attn", ("to_q", "to_k", "to_v")),
                ("txt_attn", ("add_q_proj", "add_k_proj", "add_v_proj")),
            ):
                for name, part in zip(names, state[f"{src}{stream}.qkv.{p}"].chunk(3, dim=0), strict=True):
                    out[f"{dst}attn.{name}.{p}"] = part
        for ours, theirs in _DOUBLE_NORMS.items():
            out[dst + theirs] = state[src + ours]
    for i in range(config["num_single_layers"]):
        src, dst = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for p in ("weight", "bias"):
            sizes = [hidden, hidden, hidden, hidden * MLP_RATIO]
            q, k, v, mlp = state[f"{src}linear1.{p}"].split(sizes, dim=0)
            out.update(
                {
                    f"{dst}attn.to_q.{p}": q,
                    f"{dst}attn.to_k.{p}": k,
                    f"{dst}attn.to_v.{p}": v,
                    f"{dst}proj_mlp.{p}": mlp,
                }
            )
            out[f"{dst}proj_out.{p}"] = state[f"{src}linear2.{p}"]
            if modulated:
                out[f"{dst}norm.linear.{p}"] = state[f"{src}modulation.lin.{p}"]
        out[f"{dst}attn.norm_q.weight"] = state[f"{src}norm.query_norm.scale"]
        out[f"{dst}attn.norm_k.weight"] = state[f"{src}norm.key_norm.scale"]
    return out


def converter(config: Mapping[str, Any]) -> Any:
    return lambda state: to_diffusers(state, config)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `FluxTransformer2DModel` filled from the Flux weights under `prefix` (other keys ignored)."""
    from diffusers import FluxTransformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix)
    return filled(
        lambda: FluxTransformer2DModel(**config),
        lambda _: to_diffusers(own, config),
        "Flux diffusion model",
        dtype,
    )
