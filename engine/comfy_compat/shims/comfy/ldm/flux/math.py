"""ComfyUI's comfy.ldm.flux.math rotary position embedding helpers, which packs reuse on other
models' attention. Loom has no Flux model; these are the tensor functions only.

Frequencies have ComfyUI's layout: `rope(pos, dim, theta)` gives (..., n, dim/2, 2, 2) rotation
matrices, and `apply_rope1` rotates the consecutive pairs of the last axis of `x` with them.
"""

from __future__ import annotations

import torch
from torch import Tensor


def rope(pos: Tensor, dim: int, theta: float) -> Tensor:
    """Rotation matrices [[cos, -sin], [sin, cos]] of angle pos * theta^(-2i/dim), i < dim/2."""
    if dim % 2:
        raise ValueError(f"rope: dim must be even, got {dim}")
    scale = torch.arange(0, dim, 2, dtype=torch.float64, device=pos.device) / dim
    omega = 1.0 / (theta**scale)
    angles = pos.to(torch.float64).unsqueeze(-1) * omega
    cos, sin = torch.cos(angles), torch.sin(angles)
    rows = torch.stack([torch.stack([cos, -sin], dim=-1), torch.stack([sin, cos], dim=-1)], dim=-2)
    return rows.to(torch.float32)


def apply_rope1(x: Tensor, freqs_cis: Tensor) -> Tensor:
    """`x` with each pair (x[2i], x[2i+1]) of its last axis multiplied by the matrix freqs_cis[..., i]."""
    pairs = x.to(freqs_cis.dtype).reshape(*x.shape[:-1], -1, 1, 2)
    out = freqs_cis[..., 0] * pairs[..., 0] + freqs_cis[..., 1] * pairs[..., 1]
    return out.reshape(x.shape).type_as(x)


def apply_rope(xq: Tensor, xk: Tensor, freqs_cis: Tensor) -> tuple[Tensor, Tensor]:
    return apply_rope1(xq, freqs_cis), apply_rope1(xk, freqs_cis)


__all__ = ["apply_rope", "apply_rope1", "rope"]
