"""Flux.2 (dev, Klein 4B / 9B, base and distilled): detection from the reference key layout ComfyUI's
split files use, config from shapes, loading into diffusers' `Flux2Transformer2DModel`.

Keys (as Flux.1's, without biases, plus shared modulations): `img_in`, `txt_in`, `time_in.{in,out}_layer`,
`guidance_in.…` (dev only: Klein has no guidance embedding), `double_stream_modulation_{img,txt}.lin`,
`single_stream_modulation.lin`, `double_blocks.N.{img,txt}_{attn.{qkv,proj,norm.*_norm.scale},mlp.{0,2}}`,
`single_blocks.N.{linear1,linear2,norm.*_norm.scale}`, `final_layer.{linear,adaLN_modulation.1}`; an
all-in-one file prefixes them with `model.diffusion_model.`. Heads are 128 wide and the rotary axes
(32, 32, 32, 32) over (frame, row, column, text position), as ComfyUI's detection fixes them; the MLP
ratio and every width are read from the shapes. The conversion is diffusers' own.

ComfyUI's `*fp8mixed*` files quantise some matrices to fp8 with a per-tensor `weight_scale` beside them
(and `input_scale`, `comfy_quant` markers): such a weight is read as its product with its scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models.flux import count_blocks, marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("double_stream_modulation_img.lin.weight", "single_stream_modulation.lin.weight", "img_in.weight")
HEAD_DIM = 128
AXES_DIMS = (32, 32, 32, 32)
ROPE_THETA = 2000
# ComfyUI's text-encoder widths (hidden size × 3 layers) → the Klein / dev size a file is, for messages.
SIZES = {3 * 2560: "Klein 4B", 3 * 4096: "Klein 9B", 3 * 5120: "dev"}


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def variant(shapes: Shapes, prefix: str) -> str:
    """ "Flux.2 dev" (guidance-distilled: it embeds the guidance) or "Flux.2 Klein …"."""
    joint = shapes[prefix + "txt_in.weight"][1]
    if prefix + "guidance_in.in_layer.weight" in shapes:
        return "Flux.2 dev"
    size = SIZES.get(joint, "")
    return f"Flux.2 Klein {size}".rstrip() if size != "dev" else "Flux.2 Klein"


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    hidden, in_channels = shapes[p + "img_in.weight"]
    mlp_in = shapes[p + "double_blocks.0.img_mlp.0.weight"][0]  # SwiGLU: gate and value rows
    return {
        "patch_size": 1,
        "in_channels": in_channels,
        "out_channels": shapes[p + "final_layer.linear.weight"][0],
        "num_layers": count_blocks(shapes, p, "double_blocks"),
        "num_single_layers": count_blocks(shapes, p, "single_blocks"),
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": hidden // HEAD_DIM,
        "joint_attention_dim": shapes[p + "txt_in.weight"][1],
        "timestep_guidance_channels": shapes[p + "time_in.in_layer.weight"][1],
        "mlp_ratio": mlp_in / 2 / hidden,
        "axes_dims_rope": AXES_DIMS,
        "rope_theta": ROPE_THETA,
        "guidance_embeds": p + "guidance_in.in_layer.weight" in shapes,
    }


QUANT_SUFFIXES = (".weight_scale", ".input_scale", ".comfy_quant")


def to_diffusers(state: Mapping[str, Any]) -> dict[str, Any]:
    """Reference-layout Flux.2 weights (no prefix) under diffusers' names (diffusers' converter); scaled
    fp8 weights multiplied by their scales."""
    from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers

    present = set(state)
    weights = {k: _unscaled(state, k, present) for k in state if not k.endswith(QUANT_SUFFIXES)}
    return dict(convert_flux2_transformer_checkpoint_to_diffusers(weights))


def _unscaled(state: Mapping[str, Any], key: str, present: set[str]) -> Any:
    tensor = state[key]
    scale = key.removesuffix("weight") + "weight_scale"
    if not key.endswith(".weight") or scale not in present:
        return tensor
    return tensor.float() * state[scale].float()


def converter(config: Mapping[str, Any]) -> Any:
    return to_diffusers


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `Flux2Transformer2DModel` filled from the Flux.2 weights under `prefix` (other keys ignored)."""
    from diffusers import Flux2Transformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, lambda k: k.startswith(("first_stage_model.", "text_encoders.", "vae.")))
    return filled(
        lambda: Flux2Transformer2DModel(**config),
        lambda _: to_diffusers(own),
        "Flux.2 diffusion model",
        dtype,
    )
