"""HiDream-I1 (dev, fast, full) and HiDream-E1 (editing): detection from the key layout ComfyUI's split files
use, config from shapes, loading into diffusers' `HiDreamImageTransformer2DModel`.

`hidream_i1_*.safetensors` hold the transformer under HiDream's own names, which are diffusers' too:
`t_embedder.timestep_embedder.linear_{1,2}`, `p_embedder.pooled_embedder.linear_{1,2}`, `x_embedder.proj`,
`double_stream_blocks.N.block.{adaLN_modulation.1, attn1.{to_q,to_k,to_v,to_out,q_rms_norm,k_rms_norm and
their _t twins}, ff_i.{shared_experts,experts.M,gate}, ff_t}`, `single_stream_blocks.N.block.…`,
`final_layer.{linear, adaLN_modulation.1}`, `caption_projection.N.linear` (one per block for the Llama
layers, the last one for T5). A checkpoint prefixes them with `model.diffusion_model.`.

ComfyUI fixes HiDream's size in its detection (20 heads of 128, 16 + 32 blocks, 4 experts, rotary axes
64/32/32); Loom reads the widths and depths from the shapes, with ComfyUI's 128-wide heads and its choice
of two active experts, so test-sized files load too. E1 has I1's shapes: the edit comes from the
reference latent the sampler joins beside the image (engine.diffusion.flow_hidream).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "")
# ComfyUI's marker is the first caption projection; the block and embedder keys make it unambiguous.
MARKERS = (
    "caption_projection.0.linear.weight",
    "double_stream_blocks.0.block.adaLN_modulation.1.weight",
    "x_embedder.proj.weight",
)
PATCH = 2
HEAD_DIM = 128
ACTIVE_EXPERTS = 2
AXES_DIMS = (64, 32, 32)
# Llama 3.1 8B's layers: block i reads layer min(i, 31) (ComfyUI's list); a CLIP without Llama gives
# zeros for this many layers.
LLAMA_LAYERS = 32


def prefix_of(shapes: Shapes) -> str | None:
    for prefix in PREFIXES:
        if all(prefix + m in shapes for m in MARKERS):
            return prefix
    return None


def _count(shapes: Shapes, prefix: str, pattern: str) -> int:
    compiled = re.compile(re.escape(prefix) + pattern)
    return len({int(m.group(1)) for k in shapes if (m := compiled.match(k))})


def transformer_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    """diffusers' config of the HiDream transformer under `prefix`, read from its shapes."""
    p = prefix
    inner, patch_features = shapes[p + "x_embedder.proj.weight"]
    if inner % HEAD_DIM:
        raise UnsupportedModelError(
            f"a HiDream transformer {inner} wide does not split into {HEAD_DIM}-wide attention heads"
        )
    double = _count(shapes, p, r"double_stream_blocks\.(\d+)\.")
    single = _count(shapes, p, r"single_stream_blocks\.(\d+)\.")
    projections = _count(shapes, p, r"caption_projection\.(\d+)\.")
    if projections != double + single + 1:
        raise UnsupportedModelError(
            f"a HiDream transformer with {double} + {single} blocks needs {double + single + 1} caption "
            f"projections, found {projections}"
        )
    experts = _count(shapes, p, r"double_stream_blocks\.0\.block\.ff_i\.experts\.(\d+)\.")
    llama_width = shapes[p + "caption_projection.0.linear.weight"][1]
    t5_width = shapes[p + f"caption_projection.{projections - 1}.linear.weight"][1]
    return {
        "patch_size": PATCH,
        "in_channels": patch_features // (PATCH * PATCH),
        "out_channels": shapes[p + "final_layer.linear.weight"][0] // (PATCH * PATCH),
        "num_layers": double,
        "num_single_layers": single,
        "attention_head_dim": HEAD_DIM,
        "num_attention_heads": inner // HEAD_DIM,
        "caption_channels": [t5_width, llama_width],
        "text_emb_dim": shapes[p + "p_embedder.pooled_embedder.linear_1.weight"][1],
        "num_routed_experts": experts,
        "num_activated_experts": min(ACTIVE_EXPERTS, experts) if experts else ACTIVE_EXPERTS,
        "axes_dims_rope": list(AXES_DIMS),
        "max_resolution": [128, 128],
        # engine.diffusion.flow_hidream picks each block's Llama layer itself and passes them in order.
        "llama_layers": list(range(double + single)),
    }


def variant(shapes: Shapes, prefix: str) -> str:
    return "HiDream"


def converter(config: Mapping[str, Any]) -> Any:
    """HiDream's released names are diffusers' names: only the prefix goes."""
    return lambda state: dict(state)


def load_transformer(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A `HiDreamImageTransformer2DModel` filled from the weights under `prefix` (other keys ignored)."""
    from diffusers import HiDreamImageTransformer2DModel

    from engine.models.flow_fill import fill as filled
    from engine.models.lazy_view import Prefixed, shapes_of
    from engine.models.zimage import OTHER_MODELS

    config = transformer_config(shapes_of(state, prefix), prefix)
    own = Prefixed(state, prefix, OTHER_MODELS)
    return filled(
        lambda: HiDreamImageTransformer2DModel(**config),
        lambda _: own,
        "HiDream diffusion model",
        dtype,
    )
