"""Standalone text-encoder files as ComfyUI users have them (models/text_encoders, models/clip).

`clip_l.safetensors` and `clip_g.safetensors` hold transformers' CLIP layout (`text_model.…`, optionally
`text_projection.weight`); `t5xxl_fp16.safetensors` / `t5xxl_fp8_e4m3fn.safetensors` hold transformers'
T5 encoder layout (`encoder.block.N.layer…`, `shared.weight`). All-in-one SD3.5 checkpoints carry the same
layouts under `text_encoders.clip_l.transformer.` etc. The config of each is read from its shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from engine.models.errors import UnsupportedModelError

Kind = Literal["clip", "t5", "qwen3", "qwen25", "mistral", "gemma2"]
Role = Literal[
    "clip_l",
    "clip_g",
    "t5xxl",
    "qwen3_4b",
    "qwen25_7b",
    "qwen3_8b",
    "mistral3_24b",
    "qwen3vl_8b",
    "qwen3vl_4b",
    "gemma2_2b",
    "llama3_8b",
]
Shapes = Mapping[str, tuple[int, ...]]

T5_MARKER = "encoder.block.0.layer.0.SelfAttention.q.weight"
CLIP_MARKER = "embeddings.token_embedding.weight"
# ComfyUI tells CLIP-G from CLIP-L by depth (32 layers against 12); widths say the same (1280 vs 768).
CLIP_G_MIN_WIDTH = 1280
CLIP_PAD = {"clip_l": 49407, "clip_g": 0}
# ComfyUI's names for the Qwen text encoders (qwen_3_4b.safetensors, qwen_2.5_vl_7b.safetensors).
LLM_ROLES: dict[str, Role] = {
    "qwen3": "qwen3_4b",
    "qwen25": "qwen25_7b",
    "mistral": "mistral3_24b",
    "gemma2": "gemma2_2b",  # Lumina Image 2.0's gemma_2_2b
}
# Qwen3 8B (Flux.2 Klein 9B's text encoder) is told from Qwen3 4B by its width, as in ComfyUI.
QWEN3_8B_WIDTH = 4096
LLM_PADS = {"mistral3_24b": 11, "gemma2_2b": 0}


@dataclass(frozen=True)
class TextEncoder:
    """One loaded text encoder with the role it plays in its family's conditioning."""

    role: Role
    model: Any
    pad_id: int
    width: int


def kind_of(shapes: Shapes, prefix: str = "") -> Kind | None:
    from engine.models import llm_encoders

    llm = llm_encoders.kind_of(shapes, prefix)
    if llm is not None:
        return llm  # type: ignore[return-value]
    if prefix + T5_MARKER in shapes:
        return "t5"
    if prefix + CLIP_MARKER in shapes or prefix + "text_model." + CLIP_MARKER in shapes:
        return "clip"
    return None


def describe(shapes: Shapes) -> str:
    """What a file that is not a text encoder looks like, for error messages."""
    return ", ".join(sorted(shapes)[:3]) or "no tensors"


def _clip_inner(shapes: Shapes, prefix: str) -> str:
    return prefix + "text_model." if prefix + "text_model." + CLIP_MARKER in shapes else prefix


def clip_width(shapes: Shapes, prefix: str = "") -> int:
    return shapes[_clip_inner(shapes, prefix) + CLIP_MARKER][1]


def clip_config(shapes: Shapes, prefix: str, role: Role) -> dict[str, Any]:
    inner = _clip_inner(shapes, prefix)
    vocab, width = shapes[inner + CLIP_MARKER]
    layers = {
        int(m.group(1)) for k in shapes if (m := re.match(re.escape(inner) + r"encoder\.layers\.(\d+)\.", k))
    }
    projection = shapes.get(prefix + "text_projection.weight")
    return {
        "vocab_size": vocab,
        "hidden_size": width,
        "intermediate_size": shapes[inner + "encoder.layers.0.mlp.fc1.weight"][0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": max(width // 64, 1),
        "max_position_embeddings": shapes[inner + "embeddings.position_embedding.weight"][0],
        "hidden_act": "gelu" if role == "clip_g" else "quick_gelu",
        "projection_dim": projection[0] if projection else width,
        "bos_token_id": 49406,
        "eos_token_id": 49407,
        "pad_token_id": CLIP_PAD[role],
    }


def t5_config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix
    q = shapes[p + T5_MARKER]
    bias = shapes[p + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    blocks = {
        int(m.group(1)) for k in shapes if (m := re.match(re.escape(p) + r"encoder\.block\.(\d+)\.", k))
    }
    heads = bias[1]
    gated = p + "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in shapes
    ff = shapes[
        p
        + (
            "encoder.block.0.layer.1.DenseReluDense.wi_0.weight"
            if gated
            else "encoder.block.0.layer.1.DenseReluDense.wi.weight"
        )
    ]
    vocab = shapes.get(p + "shared.weight", shapes.get(p + "encoder.embed_tokens.weight", (32128, q[1])))[0]
    return {
        "vocab_size": vocab,
        "d_model": q[1],
        "d_kv": q[0] // heads,
        "d_ff": ff[0],
        "num_layers": len(blocks),
        "num_heads": heads,
        "relative_attention_num_buckets": bias[0],
        "relative_attention_max_distance": 128,
        "feed_forward_proj": "gated-gelu" if gated else "relu",
        "is_encoder_decoder": False,
        "use_cache": False,
        "pad_token_id": 0,
        "eos_token_id": 1,
    }


def load(
    state: Mapping[str, Any], prefix: str, role: Role, dtype: Any, with_projection: bool = False
) -> TextEncoder:
    """Build and fill the text encoder stored under `prefix` in `state` for `role`; `with_projection`:
    a CLIP-L file's `text_projection` is kept (HiDream pools CLIP-L through it)."""
    from engine.models.checkpoint import _filled

    if role == "llama3_8b":
        from engine.models import llama3_encoder

        llama, width = llama3_encoder.load(state, prefix, dtype, role)
        return TextEncoder(role, llama, llama3_encoder.PAD_ID, width)

    if role in ("qwen3_4b", "qwen25_7b", "qwen3_8b", "mistral3_24b", "qwen3vl_8b", "qwen3vl_4b", "gemma2_2b"):
        from engine.models import llm_encoders

        qwen3vl = role in ("qwen3vl_8b", "qwen3vl_4b")
        _, encoder, width = llm_encoders.load(state, prefix, dtype, role, qwen3vl=qwen3vl)
        return TextEncoder(role, encoder, LLM_PADS.get(role, 151643), width)
    from engine.models.lazy_view import Prefixed, shapes_of

    shapes = shapes_of(state, prefix)
    if role == "t5xxl":
        from transformers import T5Config, T5EncoderModel

        config = t5_config(shapes, prefix)
        own = Prefixed(state, prefix)
        model = _filled(
            lambda: T5EncoderModel(T5Config(**config)), lambda m: _t5_state(own, m), "T5-XXL", dtype
        )
        return TextEncoder(role, model, 0, config["d_model"])
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models.keymap import text_from_original, text_state_for_model

    config = clip_config(shapes, prefix, role)
    projected = role == "clip_g" or (with_projection and prefix + "text_projection.weight" in shapes)
    cls = CLIPTextModelWithProjection if projected else CLIPTextModel
    canonical = text_from_original(state, prefix, "hf")
    model = _filled(
        lambda: cls(CLIPTextConfig(**config)), lambda m: text_state_for_model(canonical, m), role, dtype
    )
    return TextEncoder(role, model, CLIP_PAD[role], config["hidden_size"])


def _t5_state(own: Mapping[str, Any], model: Any) -> dict[str, Any]:
    """The T5 weights the model has; the token embedding (tied: `shared` and `encoder.embed_tokens`) is
    read once, from whichever the file holds. In ComfyUI's `*_fp8_scaled` files
    (`t5xxl_fp8_e4m3fn_scaled`) a matrix is fp8 beside its `scale_weight`: the weight is their product."""
    from engine.models.llm_encoders import _unscaled

    wanted = set(model.state_dict())
    tied = ("shared.weight", "encoder.embed_tokens.weight")
    present = set(own)
    out = {k: _unscaled(own, "", k, present) for k in own if k in wanted and k not in tied}
    embedding = own["shared.weight"] if "shared.weight" in own else own["encoder.embed_tokens.weight"]
    out.update({k: embedding for k in tied if k in wanted})
    return out


def assign_roles(files: list[tuple[str, Shapes]]) -> list[Role]:
    """The role of each (name, shapes) text-encoder file: T5 by its keys; of two CLIPs the wider is
    CLIP-G; a lone CLIP is CLIP-G only at CLIP-G's width."""
    kinds = [kind_of(shapes) for _, shapes in files]
    for (name, shapes), kind in zip(files, kinds, strict=True):
        if kind is None:
            raise UnsupportedModelError(
                f"{name}: not a CLIP, T5, Qwen, Mistral, Gemma 2 or Llama 3 text encoder "
                f"(found keys like {describe(shapes)})"
            )
    clip_widths = sorted(clip_width(s) for (_, s), k in zip(files, kinds, strict=True) if k == "clip")
    roles: list[Role] = []
    for (_, shapes), kind in zip(files, kinds, strict=True):
        if kind == "t5":
            roles.append("t5xxl")
            continue
        if kind == "qwen3" and shapes["model.embed_tokens.weight"][1] == QWEN3_8B_WIDTH:
            roles.append("qwen3_8b")
            continue
        if kind in LLM_ROLES:
            roles.append(LLM_ROLES[kind])
            continue
        width = clip_width(shapes)
        is_g = (
            width >= CLIP_G_MIN_WIDTH
            if len(clip_widths) == 1
            else width == clip_widths[-1] and width > clip_widths[0]
        )
        roles.append("clip_g" if is_g else "clip_l")
    return roles
