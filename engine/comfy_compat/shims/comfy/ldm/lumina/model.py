"""ComfyUI's comfy.ldm.lumina.model: the gated feed-forward layer (SwiGLU) that packs call or patch
(KJNodes chunks it through `FeedForward.forward`). Loom loads no Lumina model; the transformer
blocks and the model itself are not provided.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class FeedForward(nn.Module):
    """w2(silu(w1 x) * w3 x), with ComfyUI's weight names and hidden size: `hidden_dim` scaled by
    `ffn_dim_multiplier` (when given), then rounded up to a multiple of `multiple_of`."""

    def __init__(
        self,
        dim: int,
        hidden_dim: int,
        multiple_of: int,
        ffn_dim_multiplier: float | None,
        operation_settings: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        settings = operation_settings or {}
        if ffn_dim_multiplier is not None:
            hidden_dim = int(ffn_dim_multiplier * hidden_dim)
        hidden_dim = -(-hidden_dim // multiple_of) * multiple_of
        ops = settings.get("operations") or nn
        where = {"device": settings.get("device"), "dtype": settings.get("dtype")}
        self.w1 = ops.Linear(dim, hidden_dim, bias=False, **where)
        self.w2 = ops.Linear(hidden_dim, dim, bias=False, **where)
        self.w3 = ops.Linear(dim, hidden_dim, bias=False, **where)

    def _forward_silu_gating(self, x1: torch.Tensor, x3: torch.Tensor) -> torch.Tensor:
        return nn.functional.silu(x1) * x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(self._forward_silu_gating(self.w1(x), self.w3(x)))


__all__ = ["FeedForward"]
