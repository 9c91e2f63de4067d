"""fp8 weight storage (UNETLoader's weight_dtype): Linear weights kept in fp8, upcast per layer.

CPUs (and GPUs before Ada) have no fp8 matrix multiply, so each Linear casts its fp8 weight to the
activation dtype inside forward: memory holds one byte per weight and only one layer is upcast at a
time, as ComfyUI's manual cast does. fp8_e4m3fn_fast would use fp8 matmuls where the device has them;
here it stores like fp8_e4m3fn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

WEIGHT_DTYPES = ("default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2")
FP8 = {
    "fp8_e4m3fn": torch.float8_e4m3fn,
    "fp8_e4m3fn_fast": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}


class CastLinear(nn.Linear):
    """A Linear whose stored weight may be fp8: computed in the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def store_linear_weights(model: nn.Module, dtype: torch.dtype, keep: tuple[str, ...] = ()) -> nn.Module:
    """Keep every Linear weight of `model` in `dtype` (an fp8 type), upcast when used. Modules whose names
    contain a `keep` pattern stay as they are (Z-Image's timestep embedder casts its input to its weight's
    dtype, which fp8 cannot compute in)."""
    for name, module in model.named_modules():
        if keep and any(pattern in name for pattern in keep):
            continue
        if type(module) is nn.Linear:
            module.weight = nn.Parameter(module.weight.detach().to(dtype), requires_grad=False)
            module.__class__ = CastLinear
    return model


# Stored dtype names of fp8 matrices: the safetensors header's and torch's.
_FP8_NAMES = {
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
    "float8_e4m3fn": torch.float8_e4m3fn,
    "float8_e5m2": torch.float8_e5m2,
}


def file_fp8_dtype(matrix_dtypes: dict[str, str]) -> torch.dtype | None:
    """The fp8 dtype most of a file's matrices are stored in (flux1-dev-fp8 style files), or None;
    `matrix_dtypes` maps each matrix to its stored dtype name (engine.models.lazy_view.stored_dtypes)."""
    counts: dict[str, int] = {}
    for name in matrix_dtypes.values():
        counts[name] = counts.get(name, 0) + 1
    if not counts:
        return None
    return _FP8_NAMES.get(max(counts, key=lambda d: counts[d]))
