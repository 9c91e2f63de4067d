"""Z-Image (Turbo): detection from the key layout ComfyUI's split file uses, config from shapes, loading.

`z_image_turbo_bf16.safetensors` holds the NextDiT-style single-stream transformer under its original
names: `x_embedder`, `t_embedder.mlp.{0,2}`, `cap_embedder.{0 (RMSNorm), 1}`, `x_pad_token`,
`cap_pad_token`, `noise_refiner.N`, `context_refiner.N`, `layers.N.{attention.{qkv,out,q_norm,k_norm},
attention_norm{1,2}, ffn_norm{1,2}, feed_forward.w{1,2,3}, adaLN_modulation.0}`, `final_layer.{linear,
adaLN_modulation.1}` (and `norm_final`, which the model does not use). A checkpoint prefixes them with
`model.diffusion_model.`. diffusers' converter renames them into a `ZImageTransformer2DModel`; Lumina 2
has the same blocks without the pad tokens (engine.models.lumina2).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.models.flux import count_blocks, marked_prefix

Shapes = Mapping[str, tuple[int, ...]]

MARKERS = ("cap_embedder.1.weight", "x_pad_token", "layers.0.attention.qkv.weight", "x_embedder.weight")
PATCH = 2
# Z-Image's rotary axes (frame, row, column) over 128-channel heads, as its released config.
AXES_DIMS = (32, 48, 48)
AXES_LENS = (1536, 512, 512)


def prefix_of(shapes: Shapes) -> str | None:
    return marked_prefix(shapes, MARKERS)


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    dim, patch_features = shapes[p + "x_embedder.weight"]
    head_dim = shapes[p + "layers.0.attention.q_norm.weight"][0]
    qkv = shapes[p + "layers.0.attention.qkv.weight"][0]
    heads = dim // head_dim
    axes = AXES_DIMS if head_dim == sum(AXES_DIMS) else _axes_for(head_dim)
    return {
        "all_patch_size": (PATCH,),
        "all_f_patch_size": (1,),
        "in_channels": patch_features // (PATCH * PATCH),
        "dim": dim,
        "n_layers": count_blocks(shapes, p, "layers"),
        "n_refiner_layers": count_blocks(shapes, p, "noise_refiner"),
        "n_heads": heads,
        "n_kv_heads": (qkv // head_dim - heads) // 2,
        "norm_eps": 1e-5,
        "qk_norm": True,
        "cap_feat_dim": shapes[p + "cap_embedder.0.weight"][0],
        "rope_theta": 256.0,
        "t_scale": 1000.0,
        "axes_dims": list(axes),
        "axes_lens": list(AXES_LENS),
    }


def _axes_for(head_dim: int) -> tuple[int, int, int]:
    """Rotary axes for a narrower head (test-sized models): Z-Image's 1:1.5:1.5 split in even sizes."""
    frame = (head_dim // 4) // 2 * 2
    rest = (head_dim - frame) // 2 // 2 * 2
    return frame, rest, head_dim - frame - rest


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `ZImageTransformer2DModel` filled from the weights under `prefix` (other keys ignored)."""
    from diffusers import ZImageTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of

    config = transformer_config(shapes_of(state, prefix), prefix)
    # `norm_final` is in the released file but not in the model: never read it.
    own = Prefixed(state, prefix, lambda k: OTHER_MODELS(k) or k == "norm_final.weight")
    return filled(
        lambda: ZImageTransformer2DModel(**config),
        lambda _: convert_z_image_transformer_checkpoint_to_diffusers(dict(own)),
        "Z-Image diffusion model",
        dtype,
    )


def converter(config: Mapping[str, Any]) -> Any:
    from diffusers.loaders.single_file_utils import convert_z_image_transformer_checkpoint_to_diffusers

    return lambda state: convert_z_image_transformer_checkpoint_to_diffusers(dict(state))


def OTHER_MODELS(key: str) -> bool:
    """Keys of the other models an all-in-one file holds (VAE, text encoders)."""
    return key.startswith(("first_stage_model.", "text_encoders."))
