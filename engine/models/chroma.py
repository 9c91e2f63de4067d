"""Chroma (Flux.1-derived, T5 only, no guidance): detection from the key layout ComfyUI uses, config from
shapes, loading into diffusers' `ChromaTransformer2DModel`.

Chroma keeps Flux's `img_in`, `txt_in`, `double_blocks` and `single_blocks` but prunes every per-block
modulation (`img_mod`, `txt_mod`, `modulation`, `final_layer.adaLN_modulation`), `time_in`,
`vector_in` and `guidance_in`: one `distilled_guidance_layer` (an MLP "approximator": `in_proj`,
`layers.N.{in_layer,out_layer}`, `norms.N.scale`, `out_proj`) makes all the modulation vectors from the
timestep. diffusers' own converter fixes the width at 3072, so the map is written here, reading every
width from the shapes (heads are 128 wide).

The approximator makes one vector per modulation index. ComfyUI always makes 344 of them (the released
19 double + 38 single blocks: 3 × 38 + 12 × 19 + 2) and takes the final layer's shift and scale from the
last two, whatever the depth; diffusers makes only as many as the depth needs. At the released depth both
pick the same indices; for any other depth `match_modulation_indices` gives Loom ComfyUI's 344.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from engine.models import flux

Shapes = Mapping[str, tuple[int, ...]]

# ComfyUI's fixed number of modulation indices (comfy/ldm/chroma/model.py, the released depth's count).
MODULATION_INDICES = 344

MARKERS = ("distilled_guidance_layer.in_proj.weight", "double_blocks.0.img_attn.qkv.weight", "img_in.weight")


def prefix_of(shapes: Shapes) -> str | None:
    return flux.marked_prefix(shapes, MARKERS)


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    approximator_hidden, approximator_in = shapes[p + "distilled_guidance_layer.in_proj.weight"]
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": shapes[p + "final_layer.linear.weight"][0],
        "num_layers": flux.count_blocks(shapes, p, "double_blocks"),
        "num_single_layers": flux.count_blocks(shapes, p, "single_blocks"),
        "attention_head_dim": flux.HEAD_DIM,
        "num_attention_heads": hidden // flux.HEAD_DIM,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "axes_dims_rope": (16, 56, 56),
        "approximator_num_channels": approximator_in,
        "approximator_hidden_dim": approximator_hidden,
        "approximator_layers": flux.count_blocks(shapes, p, "distilled_guidance_layer.layers"),
    }


def to_diffusers(state: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Reference-layout Chroma weights (no prefix) under diffusers' names."""
    out: dict[str, Any] = {}
    g = "distilled_guidance_layer."
    for p in ("weight", "bias"):
        out[f"x_embedder.{p}"] = state[f"img_in.{p}"]
        out[f"context_embedder.{p}"] = state[f"txt_in.{p}"]
        out[f"proj_out.{p}"] = state[f"final_layer.linear.{p}"]
        out[f"{g}in_proj.{p}"] = state[f"{g}in_proj.{p}"]
        out[f"{g}out_proj.{p}"] = state[f"{g}out_proj.{p}"]
        for i in range(config["approximator_layers"]):
            out[f"{g}layers.{i}.linear_1.{p}"] = state[f"{g}layers.{i}.in_layer.{p}"]
            out[f"{g}layers.{i}.linear_2.{p}"] = state[f"{g}layers.{i}.out_layer.{p}"]
    for i in range(config["approximator_layers"]):
        out[f"{g}norms.{i}.weight"] = state[f"{g}norms.{i}.scale"]
    out.update(flux.blocks_to_diffusers(state, config, modulated=False))
    return out


def converter(config: Mapping[str, Any]) -> Any:
    return lambda state: to_diffusers(state, config)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `ChromaTransformer2DModel` filled from the Chroma weights under `prefix` (other keys ignored)."""
    from diffusers import ChromaTransformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix)
    model = filled(
        lambda: ChromaTransformer2DModel(**config),
        lambda _: to_diffusers(own, config),
        "Chroma diffusion model",
        dtype,
    )
    match_modulation_indices(model)
    return model


def match_modulation_indices(model: Any) -> None:
    """Give a `ChromaTransformer2DModel` ComfyUI's 344 modulation indices when its depth needs fewer.

    Each index is embedded on its own (a sinusoid of index × 1000) and the approximator treats every index
    alike, so the first indices, which the blocks read, are unchanged; only the final layer's shift and
    scale, read from the last two, move to ComfyUI's indices 342 and 343. A model deeper than the
    released one keeps its own count (ComfyUI cannot run one)."""
    import torch
    from diffusers.models.embeddings import get_timestep_embedding

    embed = model.time_text_embed
    if embed.mod_proj.shape[0] >= MODULATION_INDICES:
        return
    indices = torch.arange(MODULATION_INDICES, device=embed.mod_proj.device) * 1000
    width = embed.mod_proj.shape[1]
    table = get_timestep_embedding(indices, width, flip_sin_to_cos=True, downscale_freq_shift=0)
    embed.register_buffer("mod_proj", table.to(embed.mod_proj.dtype), persistent=False)


@contextmanager
def distilled_guidance(model: Any, guidance: Any) -> Iterator[None]:
    """Embed `guidance` (one value per batch row) where a `ChromaTransformer2DModel` embeds a fixed 0.

    ComfyUI's Chroma feeds the approximator the conditioning's `guidance` (FluxGuidance sets it; 0 when
    unset) through the same sinusoid as the timestep (value × 1000); diffusers' model always embeds 0. For
    the duration of the block, the guidance columns of the approximator's input (after the timestep's) are
    replaced by the embedding of `guidance`; with no non-zero value nothing changes."""
    if guidance is None or not bool((guidance != 0).any()):
        yield
        return
    embed = model.time_text_embed
    start, width = embed.time_proj.num_channels, embed.guidance_proj.num_channels

    def replace(module: Any, args: Any, output: Any) -> Any:
        projected = module.guidance_proj(guidance.to(output.device).float() * 1000).to(output.dtype)
        output = output.clone()
        output[:, :, start : start + width] = projected[:, None, :]
        return output

    handle = embed.register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()
