"""Latents as the flow transformers' token sequences, shared by the models, their ControlNets and patches:
2×2 patch packing (Flux's, Chroma's and Qwen-Image's), Flux's position ids and ComfyUI's circular padding
to whole patches; Flux.2's and Flux 3's one token per latent pixel and their 4-D position ids."""

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


def pixel_tokens(latent: Any) -> Any:
    """[B, C, H, W] → [B, H·W, C]: every latent pixel is one token (Flux.2, Flux 3)."""
    return latent.flatten(2).transpose(1, 2)


def pixel_latent(tokens: Any, height: int, width: int) -> Any:
    """[B, H·W, C] tokens back to a [B, C, H, W] latent."""
    return tokens.transpose(1, 2).reshape(tokens.shape[0], -1, height, width)


def axes4_ids(
    height: int, width: int, like: Any, dtype: Any, frame: float = 0, scale: float = 1.0, last: float = 0
) -> Any:
    """[height·width, 4] position ids (frame, row·scale, column·scale, last) of a latent's tokens, on
    `like`'s device in `dtype` (Flux.2: frame and 0; Flux 3: 0, half scale and the reference index)."""
    import torch

    device = like.device
    ids = torch.zeros((height, width, 4), device=device, dtype=dtype)
    ids[..., 0] = frame
    ids[..., 1] = torch.arange(height, device=device, dtype=dtype)[:, None] * scale
    ids[..., 2] = torch.arange(width, device=device, dtype=dtype)[None, :] * scale
    ids[..., 3] = last
    return ids.reshape(-1, 4)


def text_ids4(length: int, like: Any, dtype: Any) -> Any:
    """[length, 4] position ids (0, 0, 0, k) of a prompt's tokens (Flux.2, Flux 3)."""
    import torch

    ids = torch.zeros((length, 4), device=like.device, dtype=dtype)
    ids[:, 3] = torch.arange(length, device=like.device, dtype=dtype)
    return ids
