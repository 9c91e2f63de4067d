"""Llama 3.1 8B Instruct as HiDream's fourth text encoder (`llama_3.1_8b_instruct_fp8_scaled.safetensors`).

The file holds transformers' causal-LM names (`model.embed_tokens`, `model.layers.N.{input_layernorm,
self_attn.{q,k,v,o}_proj, mlp.{gate,up,down}_proj, post_attention_layernorm}`, `model.norm`, perhaps
`lm_head`), the layout Mistral's files have too: the CLIP type (hidream) says which it is. It is built as
transformers' `LlamaModel` with ComfyUI's settings: 128-wide heads, RMS norm eps 1e-5, rotary base 500,000
and no Llama 3.1 frequency scaling (ComfyUI's Llama2 module has none). ComfyUI's `*_fp8_scaled` matrices
are multiplied by their `scale_weight` as they are read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]
HEAD_DIM = 128
ROPE_THETA = 500_000.0
PAD_ID = 128009  # <|eot_id|>, HiDream's padding
VOCAB_SIZE = 128256  # Llama 3's token embedding rows (Mistral Small 3, the same layout, has 131,072)


def config(shapes: Shapes, prefix: str) -> dict[str, Any]:
    p = prefix + "model.layers.0."
    vocab, hidden = shapes[prefix + "model.embed_tokens.weight"]
    layers = {
        int(m.group(1)) for k in shapes if (m := re.match(re.escape(prefix) + r"model\.layers\.(\d+)\.", k))
    }
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "mlp.gate_proj.weight"][0],
        "num_hidden_layers": len(layers),
        "num_attention_heads": shapes[p + "self_attn.q_proj.weight"][0] // HEAD_DIM,
        "num_key_value_heads": shapes[p + "self_attn.k_proj.weight"][0] // HEAD_DIM,
        "head_dim": HEAD_DIM,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_type": "default", "rope_theta": ROPE_THETA},
        "max_position_embeddings": 131072,
        "tie_word_embeddings": False,
        "use_cache": False,
        "pad_token_id": PAD_ID,
        "bos_token_id": 128000,
        "eos_token_id": PAD_ID,
    }


def load(state: Mapping[str, Any], prefix: str, dtype: Any, name: str) -> tuple[Any, int]:
    """(encoder, width) of the Llama model under `prefix` in `state`."""
    from transformers import LlamaConfig, LlamaModel

    from engine.diffusion.llm_encoder import LLMEncoder
    from engine.models.checkpoint import _filled
    from engine.models.int8_convrot import dequantised
    from engine.models.lazy_view import shapes_of
    from engine.models.llm_encoders import _unscaled, kind_of

    state = dequantised(state, dtype)
    shapes = shapes_of(state, prefix)
    if kind_of(shapes, prefix) != "mistral":
        raise UnsupportedModelError(
            f"{name}: not a Llama 3.1 language model (HiDream's llama_3.1_8b_instruct): "
            f"found keys like {', '.join(sorted(shapes)[:3])}"
        )
    cfg = config(shapes, prefix)
    present = set(shapes)

    def weights(model: Any) -> dict[str, Any]:
        wanted = set(model.state_dict())
        return {k: _unscaled(state, prefix, k, present) for k in wanted if prefix + k in present}

    def built() -> Any:
        llama = LlamaConfig(**cfg)
        llama._attn_implementation = "sdpa"
        return LLMEncoder(LlamaModel(llama))

    encoder = _filled(built, weights, f"{name} (Llama 3.1)", dtype)
    return encoder, cfg["hidden_size"]
