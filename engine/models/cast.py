"""Weights stored in one dtype, computed in another: each layer casts its weights as it runs.

On the CPU a checkpoint's fp16 text encoder is kept in fp16 (half the memory, and no conversion while
loading) and run in fp32, as ComfyUI does: Linear, Embedding, LayerNorm, Conv and GroupNorm layers turn
their weights into the input's dtype just for the call. An fp16 → fp32 conversion is exact, so every
output is bit-identical to running a model converted to fp32 once at load.

`compute_in(model, dtype)` switches a model's layers in place (their class changes to a casting
subclass; parameters, names and state dicts stay as they are).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def _cast(tensor: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor | None:
    if tensor is None or tensor.dtype == like.dtype:
        return tensor
    return tensor.to(like.dtype)


class CastLinear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, _cast(self.weight, x), _cast(self.bias, x))  # type: ignore[arg-type]


class CastConv2d(nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, _cast(self.weight, x), _cast(self.bias, x))  # type: ignore[arg-type]


class CastLayerNorm(nn.LayerNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, self.normalized_shape, _cast(self.weight, x), _cast(self.bias, x), self.eps)


class CastGroupNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, _cast(self.weight, x), _cast(self.bias, x), self.eps)


class CastEmbedding(nn.Embedding):
    """Looks rows up in the stored dtype (only those rows are converted), then gives the compute dtype."""

    compute_dtype: torch.dtype = torch.float32

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = F.embedding(
            ids,
            self.weight,
            self.padding_idx,
            self.max_norm,
            self.norm_type,
            self.scale_grad_by_freq,
            self.sparse,
        )
        return rows.to(self.compute_dtype)


_CASTING: dict[type[nn.Module], type[nn.Module]] = {
    nn.Linear: CastLinear,
    nn.Conv2d: CastConv2d,
    nn.LayerNorm: CastLayerNorm,
    nn.GroupNorm: CastGroupNorm,
    nn.Embedding: CastEmbedding,
}


def compute_in(model: Any, dtype: torch.dtype) -> Any:
    """Make `model`'s layers whose weights are not `dtype` compute in `dtype`; returns `model`.

    Only the exact standard classes are switched (a subclass may have its own forward). Other modules
    keep their behaviour: a model whose other layers hold weights matter for must not be passed here.
    """
    for module in model.modules():
        casting = _CASTING.get(type(module))
        weight = getattr(module, "weight", None)
        if casting is None or weight is None or weight.dtype == dtype:
            continue
        module.__class__ = casting
        if casting is CastEmbedding:
            module.compute_dtype = dtype
    return model


def uncast(model: Any) -> Any:
    """Undo `compute_in` (before the weights are converted to the compute dtype for good)."""
    back = {casting: plain for plain, casting in _CASTING.items()}
    for module in model.modules():
        plain = back.get(type(module))
        if plain is not None:
            module.__class__ = plain
    return model


def storage_dtype(model: Any) -> torch.dtype:
    """The dtype a model's floating weights are stored in (its first floating parameter's)."""
    for parameter in model.parameters():
        if parameter.is_floating_point():
            return parameter.dtype
    return torch.float32
