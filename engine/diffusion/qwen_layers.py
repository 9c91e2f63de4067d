"""Qwen-Image's latents as tokens, one frame after another: a 4-D image latent is one frame, Qwen-Image
Layered's 5-D latent [B, C, frames, H, W] (EmptyQwenImageLayeredLatentImage: the image, then its layers)
is `frames` of them. Each frame is cut into 2×2 patches (Flux's packing) and the frames follow each other
in the sequence, as ComfyUI's `process_img` and diffusers' QwenImageLayeredPipeline `_pack_latents` lay
them out; the rotary positions (`engine.models.qwen_image.CentredRope`) number the frames 0, 1, ….

Layered's timestep embedding also takes a condition (diffusers' `additional_t_cond`): 0, "RGB(A)
layers", for every call, as both ComfyUI and diffusers' pipeline pass it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

Grid = tuple[int, int, int]  # frames, token rows, token columns


def pack(latent: Any) -> tuple[Any, Grid]:
    """[B, C, H, W] or [B, C, T, H, W] → [B, T·(H/2)·(W/2), 4C] tokens and their (T, rows, cols)."""
    from engine.diffusion.flow_tokens import pack

    frames = latent.shape[2] if latent.ndim == 5 else 1
    flat = _frames_in_batch(latent)
    tokens, rows, cols = pack(flat)
    return tokens.reshape(latent.shape[0], frames * rows * cols, tokens.shape[-1]), (frames, rows, cols)


def unpack(tokens: Any, like: Any, grid: Grid) -> Any:
    """The transformer's output tokens back in the shape of `like` (4-D or 5-D)."""
    from engine.diffusion.flow_tokens import unpack

    frames, rows, cols = grid
    flat_like = _frames_in_batch(like)
    flat = unpack(tokens.reshape(flat_like.shape[0], rows * cols, tokens.shape[-1]), flat_like, rows, cols)
    if like.ndim == 4:
        return flat
    batch, channels = like.shape[:2]
    return flat.reshape(batch, frames, channels, *flat.shape[2:]).movedim(1, 2)


def _frames_in_batch(latent: Any) -> Any:
    if latent.ndim == 4:
        return latent
    batch, channels, frames, height, width = latent.shape
    return latent.movedim(2, 1).reshape(batch * frames, channels, height, width)


def is_layered(transformer: Any) -> bool:
    """Qwen-Image Layered: a timestep embedding with the extra condition."""
    return bool(getattr(transformer.config, "use_additional_t_cond", False))


def layer_condition(transformer: Any, batch: int, device: Any) -> dict[str, Any]:
    """The transformer's extra keyword for Layered (condition 0 for every row), none otherwise."""
    import torch

    if not is_layered(transformer):
        return {}
    return {"additional_t_cond": torch.zeros(batch, dtype=torch.long, device=device)}


@contextlib.contextmanager
def reference_step(rope: Any, step: int) -> Iterator[None]:
    """For one call, reference n at rotary frame n·step (-1: ComfyUI's "negative_index")."""
    saved = rope.reference_step
    rope.reference_step = step
    try:
        yield
    finally:
        rope.reference_step = saved
