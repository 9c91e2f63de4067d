"""Latents as the flow transformers' token sequences, shared by the models, their ControlNets and patches:
2×2 patch packing (Flux's, Chroma's and Qwen-Image's), Flux's position ids and ComfyUI's circular padding
to whole patches."""

from __future__ import annotations

from typing import Any


def pad_to_patches(x: Any, patch: int) -> Any:
    """Pad height and width to whole patches, circularly as ComfyUI's `pad_to_patch_size`."""
    import torch.nn.functional as F

    return F.pad(x, (0, (-x.shape[3]) % patch, 0, (-x.shape[2]) % patch), mode="circular")


def pack(x: Any) -> tuple[Any, int, int]:
    """[B, C, H, W] → ([B, (H/2)(W/2), 4C] tokens of 2×2 patches, rows, columns)."""
    padded = pad_to_patches(x, 2)
    batch, channels = x.shape[:2]
    rows, cols = padded.shape[2] // 2, padded.shape[3] // 2
    tokens = padded.reshape(batch, channels, rows, 2, cols, 2).permute(0, 2, 4, 1, 3, 5)
    return tokens.reshape(batch, rows * cols, channels * 4), rows, cols


def unpack(out: Any, x: Any, rows: int, cols: int) -> Any:
    """Tokens back to a latent shaped like `x` (the padding cut off)."""
    batch, channels, height, width = x.shape
    out = out.reshape(batch, rows, cols, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(batch, channels, rows * 2, cols * 2)[:, :, :height, :width]


def flux_ids(rows: int, cols: int, x: Any) -> Any:
    """Flux's image position ids [(rows·cols), 3]: (0, row, column), in `x`'s device and dtype."""
    import torch

    ids = torch.zeros((rows, cols, 3), device=x.device, dtype=x.dtype)
    ids[..., 1] = torch.arange(rows, device=x.device, dtype=x.dtype)[:, None]
    ids[..., 2] = torch.arange(cols, device=x.device, dtype=x.dtype)[None, :]
    return ids.reshape(-1, 3)
