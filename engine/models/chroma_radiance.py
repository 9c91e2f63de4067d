"""Chroma Radiance (Chroma in pixel space): detection from ComfyUI's key layout, config from shapes, loading
into diffusers' `ChromaTransformer2DModel` with Loom's pixel decoder (engine.diffusion.nerf_head) on top.

The file is Chroma's without `img_in` and `final_layer`: `img_in_patch` (a 16×16 stride-16 convolution of
RGB to the transformer's width) makes the tokens, and the `nerf_*` weights decode each token's final
hidden state into the pixels of its patch. A convolution with stride equal to its kernel is a Linear on
the flattened patch (channel-major, as `unfold` flattens it), so diffusers' `x_embedder` takes the
convolution's weight reshaped; the transformer's own final norm and projection are left out (the head
reads the hidden states before them). The x0 variant (`chroma-radiance-x0`, newer ComfyUI) marks itself
with an empty `__x0__` tensor: its network predicts the clean image, which Loom turns into the velocity
(x − x0) / σ as ComfyUI does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models import chroma, flux

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("img_in_patch.weight", "nerf_blocks.0.norm.scale", "distilled_guidance_layer.in_proj.weight")
X0_MARKER = "__x0__"
# ComfyUI's default number of patches decoded at a time (0.3.64: 32; newer versions 512); the result does
# not depend on it.
NERF_TILE_SIZE = 32


def prefix_of(shapes: Shapes) -> str | None:
    return flux.marked_prefix(shapes, MARKERS)


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """diffusers' Chroma config (tokens of 3·16·16 pixel values) from the shapes."""
    p = prefix
    hidden, channels, patch, _ = shapes[p + "img_in_patch.weight"]
    approximator_hidden, approximator_in = shapes[p + "distilled_guidance_layer.in_proj.weight"]
    return {
        "patch_size": 1,
        "in_channels": channels * patch * patch,
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


def head_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """The pixel decoder's sizes from the shapes (the released file: width 64, ratio 4, depth 4, 8 freqs)."""
    p = prefix
    hidden, channels, patch, _ = shapes[p + "img_in_patch.weight"]
    width, embed_in = shapes[p + "nerf_image_embedder.embedder.0.weight"]
    generated = shapes[p + "nerf_blocks.0.param_generator.weight"][0]
    return {
        "token_width": hidden,
        "channels": channels,
        "patch": patch,
        "width": width,
        "mlp_ratio": generated // (3 * width * width),
        "depth": flux.count_blocks(shapes, p, "nerf_blocks"),
        "max_freqs": round((embed_in - channels) ** 0.5),
        "final": "conv" if p + "nerf_final_layer_conv.norm.scale" in shapes else "linear",
    }


def to_diffusers(
    state: Mapping[str, Any], config: Mapping[str, Any], head: Mapping[str, Any]
) -> dict[str, Any]:
    """Reference-layout Chroma Radiance weights (no prefix) under the names of Loom's model."""
    out: dict[str, Any] = {}
    g = "distilled_guidance_layer."
    weight = state["img_in_patch.weight"]
    out["x_embedder.weight"] = weight.reshape(weight.shape[0], -1)
    out["x_embedder.bias"] = state["img_in_patch.bias"]
    for p in ("weight", "bias"):
        out[f"context_embedder.{p}"] = state[f"txt_in.{p}"]
        out[f"{g}in_proj.{p}"] = state[f"{g}in_proj.{p}"]
        out[f"{g}out_proj.{p}"] = state[f"{g}out_proj.{p}"]
        for i in range(config["approximator_layers"]):
            out[f"{g}layers.{i}.linear_1.{p}"] = state[f"{g}layers.{i}.in_layer.{p}"]
            out[f"{g}layers.{i}.linear_2.{p}"] = state[f"{g}layers.{i}.out_layer.{p}"]
        out[f"nerf_head.embedder.embedder.0.{p}"] = state[f"nerf_image_embedder.embedder.0.{p}"]
        for i in range(head["depth"]):
            out[f"nerf_head.blocks.{i}.param_generator.{p}"] = state[f"nerf_blocks.{i}.param_generator.{p}"]
    for i in range(config["approximator_layers"]):
        out[f"{g}norms.{i}.weight"] = state[f"{g}norms.{i}.scale"]
    for i in range(head["depth"]):
        out[f"nerf_head.blocks.{i}.norm.scale"] = state[f"nerf_blocks.{i}.norm.scale"]
    final, layer = (
        ("nerf_final_layer_conv", "conv") if head["final"] == "conv" else ("nerf_final_layer", "linear")
    )
    out["nerf_head.final.norm.scale"] = state[f"{final}.norm.scale"]
    for p in ("weight", "bias"):
        out[f"nerf_head.final.{layer}.{p}"] = state[f"{final}.{layer}.{p}"]
    out.update(flux.blocks_to_diffusers(state, config, modulated=False))
    return out


def converter(shapes: Shapes) -> Any:
    """For LoRA row records: the key map of a file with these (unprefixed) shapes."""
    config, head = transformer_config(shapes, ""), head_config(shapes, "")
    return lambda state: to_diffusers(state, config, head)


def _build(config: Mapping[str, Any], head: Mapping[str, Any]) -> Any:
    import torch
    from diffusers import ChromaTransformer2DModel

    from engine.diffusion.nerf_head import NerfHead

    class FinalNormSkipped(torch.nn.Module):
        def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
            return x

    model: Any = ChromaTransformer2DModel(**config)
    model.norm_out = FinalNormSkipped()
    model.proj_out = torch.nn.Identity()
    model.nerf_head = NerfHead(**head)
    return model


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `ChromaTransformer2DModel` with `nerf_head`, filled from the weights under `prefix`; the head's
    pixel embedder stays in float32 (as ComfyUI keeps it) and `is_x0` tells the x0 variant."""
    import torch

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of

    shapes = shapes_of(state, prefix)
    config, head = transformer_config(shapes, prefix), head_config(shapes, prefix)
    own = Prefixed(state, prefix)
    model = filled(
        lambda: _build(config, head), lambda _: to_diffusers(own, config, head), "Chroma Radiance", dtype
    )
    model.nerf_head.embedder.to(torch.float32)
    model.is_x0 = prefix + X0_MARKER in shapes
    chroma.match_modulation_indices(model)
    return model
