"""ComfyUI's comfy.ldm.modules.attention: the attention functions patches call.

Attention patches and replacements (ModelPatcher.set_model_attn2_replace, ...) receive q, k, v in
ComfyUI's layout (batch, tokens, heads * dim_head) and often call `optimized_attention` themselves.
Every backend name maps to one of two implementations: torch's scaled_dot_product_attention
(optimized_attention, attention_pytorch, attention_split, attention_sub_quad, attention_xformers)
or the written-out softmax (attention_basic). Loom's UNet is diffusers', so ComfyUI's module classes
(CrossAttention, BasicTransformerBlock, SpatialTransformer) exist only as names (engine.comfy_compat.
unavailable): `isinstance` is False for Loom's blocks and constructing one raises. A pack that wraps
`BasicTransformerBlock.forward` at import (Easy-Use's LayerDiffuse) imports, but its wrapper never runs.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from engine.comfy_compat.unavailable import not_provided
from engine.diffusion.unet_hooks import attention_basic, optimized_attention

CrossAttention = not_provided(__name__, "CrossAttention")
BasicTransformerBlock = not_provided(__name__, "BasicTransformerBlock")
SpatialTransformer = not_provided(__name__, "SpatialTransformer")

optimized_attention_masked = optimized_attention
attention_pytorch = optimized_attention
attention_split = optimized_attention
attention_sub_quad = optimized_attention
attention_xformers = optimized_attention

_REGISTERED: dict[str, Callable[..., Any]] = {"pytorch": optimized_attention, "basic": attention_basic}


def wrap_attn(func: Callable[..., Any]) -> Callable[..., Any]:
    """ComfyUI's attention decorator: on the outermost call, a callable stored as
    `transformer_options["optimized_attention_override"]` (in the keyword arguments) runs instead,
    as `override(func, *args, **kwargs)`; `_inside_attn_wrapper=True` is passed along so that nested
    wrapped calls run `func` directly. Loom's own UNet attention does not go through it."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if "_inside_attn_wrapper" in kwargs:
            return func(*args, **kwargs)
        kwargs["_inside_attn_wrapper"] = True
        override = (kwargs.get("transformer_options") or {}).get("optimized_attention_override")
        if override is not None:
            return override(func, *args, **kwargs)
        return func(*args, **kwargs)

    return wrapper


def optimized_attention_for_device(
    device: Any = None, mask: bool = False, small_input: bool = False
) -> Callable[..., Any]:
    return optimized_attention


def register_attention_function(name: str, func: Callable[..., Any]) -> None:
    _REGISTERED[name] = func


def get_attention_function(name: str, default: Any = ...) -> Callable[..., Any] | None:
    if name in _REGISTERED:
        return _REGISTERED[name]
    if default is ...:
        raise KeyError(f"no attention function registered as {name!r}; known: {sorted(_REGISTERED)}")
    return default


__all__ = [
    "BasicTransformerBlock",
    "CrossAttention",
    "SpatialTransformer",
    "attention_basic",
    "attention_pytorch",
    "attention_split",
    "attention_sub_quad",
    "attention_xformers",
    "get_attention_function",
    "optimized_attention",
    "optimized_attention_for_device",
    "optimized_attention_masked",
    "register_attention_function",
    "wrap_attn",
]
