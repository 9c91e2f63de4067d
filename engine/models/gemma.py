"""Gemma 2 2B as a text encoder (Lumina Image 2.0's `gemma_2_2b_fp16.safetensors`, CLIPLoader type
lumina2), built as transformers' `Gemma2Model` with the math of ComfyUI 0.3.64's Gemma2_2B.

The keys are transformers' names (`model.embed_tokens`, `model.layers.N.{input_layernorm, self_attn.
{q,k,v,o}_proj, post_attention_layernorm, pre_feedforward_layernorm, mlp.{gate,up,down}_proj,
post_feedforward_layernorm}`, `model.norm`), told from Gemma 3 by the missing q/k norms, plus the
tokenizer's sentencepiece model as a `spiece_model` uint8 tensor. ComfyUI runs the model with plain
1/sqrt(head_dim) attention (no logit soft-capping), no sliding window and a causal mask; the released
model has 8 heads of 256 channels over 4 key/value heads. Its shapes give the heads' total width only,
so test-sized files keep the 8 query heads and their head width follows from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Shapes = Mapping[str, tuple[int, ...]]
HEADS = 8
MARKER = "model.layers.0.post_feedforward_layernorm.weight"
SPIECE = "spiece_model"


def is_gemma2(shapes: Shapes, prefix: str = "") -> bool:
    return prefix + MARKER in shapes and prefix + "model.layers.0.self_attn.q_norm.weight" not in shapes


def spiece_key(shapes: Shapes, prefix: str) -> str | None:
    """Where the sentencepiece model of the encoder under `prefix` is: beside its weights in a text-encoder
    file, or at `text_encoders.spiece_model` in a checkpoint (ComfyUI saves the tokenizer there)."""
    parts = prefix.split(".")
    candidates = [prefix + SPIECE, ".".join([*parts[:1], SPIECE]) if len(parts) > 2 else SPIECE]
    return next((key for key in candidates if key in shapes), None)


def config(shapes: Shapes, prefix: str, vocab: int, hidden: int, layers: int) -> dict[str, Any]:
    p = prefix + "model.layers.0."
    head_dim = shapes[p + "self_attn.q_proj.weight"][0] // HEADS
    return {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shapes[p + "mlp.gate_proj.weight"][0],
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS,
        "num_key_value_heads": shapes[p + "self_attn.k_proj.weight"][0] // head_dim,
        "head_dim": head_dim,
        "query_pre_attn_scalar": head_dim,
        "attn_logit_softcapping": None,
        "final_logit_softcapping": None,
        "layer_types": ["full_attention"] * layers,
        "hidden_activation": "gelu_pytorch_tanh",
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "max_position_embeddings": 8192,
        "use_cache": False,
        "pad_token_id": 0,
        "bos_token_id": 2,
        "eos_token_id": 1,
    }


def build(cfg: Mapping[str, Any]) -> Any:
    from transformers import Gemma2Config, Gemma2Model

    from engine.diffusion.llm_encoder import LLMEncoder

    # transformers has no SDPA path for Gemma 2: its eager attention is the one it builds.
    return LLMEncoder(Gemma2Model(Gemma2Config(**cfg)))
