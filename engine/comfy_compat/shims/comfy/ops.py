"""ComfyUI's comfy.ops: layer classes packs build models with, over torch.nn.

`disable_weight_init` layers skip the random initialisation (their weights are loaded right after);
`manual_cast` layers also cast their weights to the input's dtype and device on every call, for
weights stored in another dtype than the one they compute in. `cast_bias_weight` is that cast.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch


def cast_to(weight: torch.Tensor | None, dtype: Any = None, device: Any = None) -> torch.Tensor | None:
    if weight is None:
        return None
    return weight.to(device=device, dtype=dtype)


def cast_bias_weight(
    s: torch.nn.Module,
    input: torch.Tensor | None = None,
    dtype: Any = None,
    device: Any = None,
    bias_dtype: Any = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The module's weight and bias in the input's (or the given) dtype and device."""
    if input is not None:
        dtype = input.dtype if dtype is None else dtype
        bias_dtype = dtype if bias_dtype is None else bias_dtype
        device = input.device if device is None else device
    weight = cast_to(s.weight, dtype, device)  # type: ignore[arg-type]
    bias = cast_to(getattr(s, "bias", None), bias_dtype, device)
    assert weight is not None
    return weight, bias


class CastWeightBiasOp:
    comfy_cast_weights = False
    weight_function: ClassVar[list[Any]] = []
    bias_function: ClassVar[list[Any]] = []


def _no_init(self: torch.nn.Module) -> None:
    return None


def _layer(base: type, forward: Any) -> type:
    """A subclass of `base` that skips initialisation and, when casting, computes with cast weights."""

    def forward_comfy_cast_weights(self: Any, input: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        weight, bias = cast_bias_weight(self, input)
        return forward(self, input, weight, bias, *args, **kwargs)

    def forward_method(self: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        if self.comfy_cast_weights:
            return self.forward_comfy_cast_weights(*args, **kwargs)
        return base.forward(self, *args, **kwargs)  # type: ignore[attr-defined]

    return type(
        base.__name__,
        (base, CastWeightBiasOp),
        {
            "reset_parameters": _no_init,
            "forward_comfy_cast_weights": forward_comfy_cast_weights,
            "forward": forward_method,
        },
    )


def _conv(self: Any, x: torch.Tensor, weight: torch.Tensor, bias: Any) -> torch.Tensor:
    return self._conv_forward(x, weight, bias)


def _group_norm(self: Any, x: torch.Tensor, weight: Any, bias: Any) -> torch.Tensor:
    return torch.nn.functional.group_norm(x, self.num_groups, weight, bias, self.eps)


def _layer_norm(self: Any, x: torch.Tensor, weight: Any, bias: Any) -> torch.Tensor:
    if self.weight is None:
        weight = bias = None
    return torch.nn.functional.layer_norm(x, self.normalized_shape, weight, bias, self.eps)


class _Embedding(torch.nn.Embedding, CastWeightBiasOp):
    """Looks up ids (integers: the weight is moved to their device, never cast to their dtype)."""

    def reset_parameters(self) -> None:
        return None

    def forward_comfy_cast_weights(self, input: torch.Tensor, out_dtype: Any = None) -> torch.Tensor:
        weight = self.weight.to(input.device)
        out = torch.nn.functional.embedding(input, weight, self.padding_idx, self.max_norm)
        return out.to(out_dtype) if out_dtype is not None else out

    def forward(self, input: torch.Tensor, out_dtype: Any = None) -> torch.Tensor:
        if self.comfy_cast_weights or out_dtype is not None:
            return self.forward_comfy_cast_weights(input, out_dtype)
        return super().forward(input)


class disable_weight_init:
    Linear = _layer(torch.nn.Linear, lambda self, x, w, b: torch.nn.functional.linear(x, w, b))
    Conv1d = _layer(torch.nn.Conv1d, _conv)
    Conv2d = _layer(torch.nn.Conv2d, _conv)
    Conv3d = _layer(torch.nn.Conv3d, _conv)
    GroupNorm = _layer(torch.nn.GroupNorm, _group_norm)
    LayerNorm = _layer(torch.nn.LayerNorm, _layer_norm)
    Embedding: type = _Embedding

    @classmethod
    def conv_nd(cls, dims: int, *args: Any, **kwargs: Any) -> torch.nn.Module:
        layers = {1: cls.Conv1d, 2: cls.Conv2d, 3: cls.Conv3d}
        if dims not in layers:
            raise ValueError(f"comfy.ops.conv_nd: unsupported dimensions: {dims}")
        return layers[dims](*args, **kwargs)


def _casting(base: type) -> type:
    return type(base.__name__, (base,), {"comfy_cast_weights": True})


class manual_cast(disable_weight_init):
    Linear = _casting(disable_weight_init.Linear)
    Conv1d = _casting(disable_weight_init.Conv1d)
    Conv2d = _casting(disable_weight_init.Conv2d)
    Conv3d = _casting(disable_weight_init.Conv3d)
    GroupNorm = _casting(disable_weight_init.GroupNorm)
    LayerNorm = _casting(disable_weight_init.LayerNorm)
    Embedding: type = _casting(disable_weight_init.Embedding)
