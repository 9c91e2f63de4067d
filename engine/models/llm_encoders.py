"""Qwen language models as text encoders: Qwen3 (Z-Image's `qwen_3_4b`) and Qwen2.5-VL's language model
(Qwen-Image's `qwen_2.5_vl_7b`), from the files ComfyUI users have (models/text_encoders).

Their keys are transformers' causal-LM names: `model.embed_tokens`, `model.layers.N.{input_layernorm,
self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, post_attention_layernorm}`, `model.norm`, and
sometimes `lm_head` (unused here). Qwen3 has per-head RMS norms (`self_attn.q_norm`, `k_norm`); Qwen2.5 has
biases on q/k/v instead. Qwen2.5 is built as transformers' `Qwen2_5_VLTextModel`, whose multimodal
rotary embedding (time, row, column sections) places an image's tokens; with text alone every section
has the same position, i.e. ordinary 1-D RoPE. A Qwen2.5-VL file's vision tower (`visual.…`), when it
has one, is loaded beside it (engine.models.qwen_vision) for Qwen-Image Edit's image input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.models import gemma
from engine.models.errors import UnsupportedModelError

if TYPE_CHECKING:
    from engine.diffusion.llm_encoder import LLMEncoder

Shapes = Mapping[str, tuple[int, ...]]
MARKER = "model.layers.0.self_attn.q_proj.weight"
EMBED = "model.embed_tokens.weight"
# Qwen2.5 (3B, 7B) uses 128 channels per head; its shapes do not say so (Qwen3's q_norm does).
QWEN25_HEAD_DIM = 128
MISTRAL_HEAD_DIM = 128
ROPE_THETA = 1_000_000.0
# Qwen2.5-VL's rotary sections (time, row, column) over its 64 frequency pairs.
QWEN3VL_ROPE_THETA = 5_000_000.0
MROPE = {"rope_type": "default", "rope_theta": ROPE_THETA, "mrope_section": [16, 24, 24]}


def kind_of(shapes: Shapes, prefix: str = "") -> str | None:
    """ "qwen3", "qwen25" or "mistral" for a language model under `prefix`, else None. Mistral Small 3
    (Flux.2 dev's text encoder) has neither Qwen3's q/k norms nor Qwen2.5's q/k/v biases."""
    if prefix + MARKER not in shapes or prefix + EMBED not in shapes:
        return None
    if gemma.is_gemma2(shapes, prefix):
        return "gemma2"
    if prefix + "model.layers.0.self_attn.q_norm.weight" in shapes:
        return "qwen3"
    if prefix + "model.layers.0.self_attn.q_proj.bias" in shapes:
        return "qwen25"
    if prefix + "model.layers.0.mlp.gate_proj.weight" in shapes:
        return "mistral"
    return None


def has_vision(shapes: Shapes, prefix: str = "") -> bool:
    return any(k.startswith(prefix + "visual.") for k in shapes)


def config(shapes: Shapes, prefix: str, kind: str) -> dict[str, Any]:
    p = prefix + "model.layers.0."
    vocab, hidden = shapes[prefix + EMBED]
    layers = {
        int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"model\.layers\.(\d+)\.", k))
    }
    head_dim = shapes[p + "self_attn.q_norm.weight"][0] if kind == "qwen3" else QWEN25_HEAD_DIM
    if kind == "gemma2":
        return gemma.config(shapes, prefix, vocab, hidden, len(layers))
    if kind == "mistral":
        return mistral_config(shapes, prefix, vocab, hidden, len(layers))
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "mlp.gate_proj.weight"][0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": shapes[p + "self_attn.q_proj.weight"][0] // head_dim,
        "num_key_value_heads": shapes[p + "self_attn.k_proj.weight"][0] // head_dim,
        "head_dim": head_dim,
        "rms_norm_eps": 1e-6,
        "rope_theta": ROPE_THETA,
        "max_position_embeddings": 40960 if kind == "qwen3" else 128000,
        "tie_word_embeddings": False,
        "use_cache": False,
        "pad_token_id": 151643,
        **({"rope_parameters": MROPE} if kind == "qwen25" else {}),
    }


def mistral_config(shapes: Shapes, prefix: str, vocab: int, hidden: int, layers: int) -> dict[str, Any]:
    """Mistral Small 3.1's language model (128-wide heads, rope theta 10⁹, as its released config)."""
    p = prefix + "model.layers.0."
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "mlp.gate_proj.weight"][0],
        "num_hidden_layers": layers,
        "num_attention_heads": shapes[p + "self_attn.q_proj.weight"][0] // MISTRAL_HEAD_DIM,
        "num_key_value_heads": shapes[p + "self_attn.k_proj.weight"][0] // MISTRAL_HEAD_DIM,
        "head_dim": MISTRAL_HEAD_DIM,
        "rms_norm_eps": 1e-5,
        "rope_theta": 1_000_000_000.0,
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "use_cache": False,
        "pad_token_id": 11,
        "sliding_window": None,
    }


def build(kind: str, cfg: Mapping[str, Any], vision: Mapping[str, Any] | None = None) -> LLMEncoder:
    from engine.diffusion.llm_encoder import LLMEncoder

    if kind == "gemma2":
        return gemma.build(cfg)
    if kind == "mistral":
        from transformers import MistralConfig, MistralModel

        return LLMEncoder(MistralModel(MistralConfig(**cfg)))
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3Model

        return LLMEncoder(Qwen3Model(Qwen3Config(**cfg)))
    from transformers import Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel

    from engine.models import qwen_vision

    text = Qwen2_5_VLTextConfig(**cfg)
    text._attn_implementation = "sdpa"
    visual = None if vision is None else qwen_vision.build(vision)
    return LLMEncoder(Qwen2_5_VLTextModel(text), visual)


def load(
    state: Mapping[str, Any], prefix: str, dtype: Any, name: str, qwen3vl: bool = False
) -> tuple[str, LLMEncoder, int]:
    """(kind, encoder, width) of the Qwen language model under `prefix` in `state`. `qwen3vl`: Qwen3-VL's
    language model (Qwen-Image 2.1's `qwen3vl_8b`): Qwen3's layers with rotary base 5,000,000 (its
    multimodal rotary sections agree for text, where all three positions are equal), read before the final
    norm; int8 ConvRot matrices are dequantised as they are read."""
    from engine.models import qwen3vl_vision, qwen_vision
    from engine.models.checkpoint import _filled
    from engine.models.int8_convrot import dequantised
    from engine.models.lazy_view import shapes_of

    state = dequantised(state, dtype)
    shapes = shapes_of(state, prefix)
    kind = kind_of(shapes, prefix)
    if kind is None:
        raise UnsupportedModelError(f"{name}: not a Qwen3, Qwen2.5, Mistral or Gemma 2 language model")
    cfg = config(shapes, prefix, kind)
    if qwen3vl:
        if kind != "qwen3":
            raise UnsupportedModelError(f"{name}: a {kind} language model, not Qwen3-VL's (Qwen3 layers)")
        cfg = {**cfg, "rope_theta": QWEN3VL_ROPE_THETA, "max_position_embeddings": 262144}
    vision = None
    if kind == "qwen25" and qwen_vision.present(shapes, prefix):
        vision = qwen_vision.config(shapes, prefix, cfg["hidden_size"])
    if qwen3vl and qwen3vl_vision.present(shapes, prefix):
        vision = qwen3vl_vision.config(shapes, prefix, cfg["hidden_size"])

    def weights(model: Any) -> dict[str, Any]:
        wanted = set(model.state_dict())
        # Read only what the model has (not lm_head).
        present = set(shapes)  # not `in state`: on a lazy file that reads the tensor
        return {k: _unscaled(state, prefix, k, present) for k in wanted if prefix + k in present}

    def built() -> LLMEncoder:
        return qwen3vl_vision.build_encoder(cfg, vision) if qwen3vl else build(kind, cfg, vision)

    encoder = _filled(built, weights, f"{name} ({kind})", dtype)
    if prefix + "tekken_model" in shapes:  # ComfyUI's Mistral files carry their tokenizer's tekken.json
        encoder.tokenizer_data = {"tekken_model": state[prefix + "tekken_model"].numpy().tobytes()}
    spiece = gemma.spiece_key(shapes_of(state), prefix) if kind == "gemma2" else None
    if spiece is not None:  # ComfyUI's Gemma files carry their sentencepiece model
        encoder.tokenizer_data = {"spiece_model": state[spiece].numpy().tobytes()}
    if prefix + "lm_head.weight" in shapes:
        from engine.diffusion.llm_encoder import LazyHead

        encoder.head = LazyHead(state, prefix + "lm_head.weight")
    return kind, encoder, cfg["hidden_size"]


def _unscaled(state: Mapping[str, Any], prefix: str, key: str, present: set[str]) -> Any:
    """The weight under `key`; in ComfyUI's `*_fp8_scaled` files (`qwen_2.5_vl_7b_fp8_scaled`) a matrix
    is stored as fp8 beside its `scale_weight`, and the real weight is their product (ComfyUI's
    scaled_fp8 ops)."""
    tensor = state[prefix + key]
    scale = prefix + key.removesuffix("weight") + "scale_weight"
    if not key.endswith(".weight") or scale not in present:
        return tensor
    return tensor.float() * state[scale].float()
