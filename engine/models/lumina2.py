"""Lumina Image 2.0 (and its fine-tunes such as Neta Lumina): detection, config from shapes, loading.

`lumina_2_model_bf16.safetensors` (and the `model.diffusion_model.` part of the all-in-one
`lumina_2.safetensors`) hold Alpha-VLLM's NextDiT under its original names: `x_embedder`,
`t_embedder.mlp.{0,2}`, `cap_embedder.{0 (RMSNorm), 1}`, `noise_refiner.N`, `context_refiner.N`,
`layers.N.{attention.{qkv,out,q_norm,k_norm}, attention_norm{1,2}, ffn_norm{1,2}, feed_forward.w{1,2,3},
adaLN_modulation.1}`, `final_layer.{linear, adaLN_modulation.1}` and the unused `norm_final`. It is
Z-Image's layout without the pad tokens (engine.models.zimage). The keys are renamed here into diffusers'
`Lumina2Transformer2DModel`, whose math is ComfyUI 0.3.64's NextDiT: the timestep embedding of t
unscaled (t = 1 - sigma, given by the MODEL), Flux-style rotary axes (caption index, row, column) over
consecutive channel pairs, base 10,000, the caption refined unmodulated and the image modulated before
the joint layers. diffusers' own single-file converter assumes the released widths (2304-wide queries,
768-wide keys), so the fused `qkv` is split here from the head counts the shapes give.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models.flux import count_blocks, marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("cap_embedder.1.weight", "layers.0.attention.qkv.weight", "x_embedder.weight")
PATCH = 2
# The released model's rotary axes over its 96-channel heads (ComfyUI's detection fixes them).
AXES_DIMS = (32, 32, 32)
# Positions each axis can take: ComfyUI computes them on the fly; diffusers tabulates them, so the
# caption axis is made long enough for long (Neta Lumina style) prompts, the image axes for 8192 px.
AXES_LENS = (4096, 512, 512)
MULTIPLE_OF = 256
NORM_EPS = 1e-5


def prefix_of(shapes: Shapes) -> str | None:
    """The prefix of a Lumina 2 NextDiT: Z-Image's markers without its `x_pad_token`."""
    prefix = marked_prefix(shapes, MARKERS)
    return None if prefix is None or prefix + "x_pad_token" in shapes else prefix


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    dim, patch_features = shapes[p + "x_embedder.weight"]
    head_dim = shapes[p + "layers.0.attention.q_norm.weight"][0]
    heads = dim // head_dim
    qkv = shapes[p + "layers.0.attention.qkv.weight"][0]
    hidden = shapes[p + "layers.0.feed_forward.w1.weight"][0]
    multiple_of, multiplier = _ffn_sizes(dim, hidden)
    in_channels = patch_features // (PATCH * PATCH)
    return {
        "patch_size": PATCH,
        "in_channels": in_channels,
        "out_channels": shapes[p + "final_layer.linear.weight"][0] // (PATCH * PATCH),
        "hidden_size": dim,
        "num_layers": count_blocks(shapes, p, "layers"),
        "num_refiner_layers": count_blocks(shapes, p, "noise_refiner"),
        "num_attention_heads": heads,
        "num_kv_heads": (qkv // head_dim - heads) // 2,
        "multiple_of": multiple_of,
        "ffn_dim_multiplier": multiplier,
        "norm_eps": NORM_EPS,
        "axes_dim_rope": AXES_DIMS if head_dim == sum(AXES_DIMS) else axes_for(head_dim),
        "axes_lens": AXES_LENS,
        "cap_feat_dim": shapes[p + "cap_embedder.1.weight"][1],
    }


def _ffn_sizes(dim: int, hidden: int) -> tuple[int, float | None]:
    """(multiple_of, ffn_dim_multiplier) giving the feed-forward width the file has: NextDiT rounds
    4·dim up to a multiple of 256 (the released model), test-sized models may use other widths."""
    if MULTIPLE_OF * -(-4 * dim // MULTIPLE_OF) == hidden:
        return MULTIPLE_OF, None
    if hidden >= 4 * dim:
        return hidden, None  # one multiple of `hidden` covers 4·dim
    multiplier = hidden / (4 * dim)
    if int(multiplier * 4 * dim) != hidden:
        raise ValueError(f"feed-forward width {hidden} cannot be built for a {dim}-wide NextDiT")
    return 1, multiplier


def axes_for(head_dim: int) -> tuple[int, int, int]:
    """Rotary axes for narrower heads (test-sized models): the released equal thirds, in even sizes."""
    third = head_dim // 3 // 2 * 2
    return third, third, head_dim - 2 * third


# Renames inside a block (the modulated ones; the caption refiner's first norm has no modulation).
_BLOCK_RENAMES = (
    (".attention.out.", ".attn.to_out.0."),
    (".attention.q_norm.", ".attn.norm_q."),
    (".attention.k_norm.", ".attn.norm_k."),
    (".feed_forward.w1.", ".feed_forward.linear_1."),
    (".feed_forward.w2.", ".feed_forward.linear_2."),
    (".feed_forward.w3.", ".feed_forward.linear_3."),
    (".adaLN_modulation.1.", ".norm1.linear."),
    (".attention_norm2.", ".norm2."),
)
_TOP_RENAMES = {
    "t_embedder.mlp.0.": "time_caption_embed.timestep_embedder.linear_1.",
    "t_embedder.mlp.2.": "time_caption_embed.timestep_embedder.linear_2.",
    "cap_embedder.": "time_caption_embed.caption_embedder.",
    "final_layer.adaLN_modulation.1.": "norm_out.linear_1.",
    "final_layer.linear.": "norm_out.linear_2.",
}


def convert(state: Mapping[str, Any]) -> dict[str, Any]:
    """ComfyUI/Alpha-VLLM names (no prefix) → `Lumina2Transformer2DModel` names; `norm_final` dropped."""
    dim = state["x_embedder.weight"].shape[0]
    out: dict[str, Any] = {}
    for key in state:
        if key == "norm_final.weight":
            continue
        value = state[key]
        if key.endswith(".attention.qkv.weight"):
            kv = (value.shape[0] - dim) // 2
            base = key.removesuffix("qkv.weight").replace(".attention.", ".attn.")
            q, k, v = value.split([dim, kv, kv], dim=0)
            out.update({base + "to_q.weight": q, base + "to_k.weight": k, base + "to_v.weight": v})
            continue
        out[_rename(key)] = value
    return out


def _rename(key: str) -> str:
    for old, new in _TOP_RENAMES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    modulated = not key.startswith("context_refiner.")
    key = key.replace(".attention_norm1.", ".norm1.norm." if modulated else ".norm1.")
    for old, new in _BLOCK_RENAMES:
        key = key.replace(old, new)
    return key


def converter(config: Mapping[str, Any]) -> Any:
    return lambda state: convert(state)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `Lumina2Transformer2DModel` filled from the weights under `prefix` (other models ignored)."""
    from diffusers import Lumina2Transformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    return filled(
        lambda: Lumina2Transformer2DModel(**config),
        lambda _: convert(own),
        "Lumina 2 diffusion model",
        dtype,
    )
