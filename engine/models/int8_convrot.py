"""ComfyUI's per-layer quantised weights (`*_int8_convrot.safetensors`): dequantised on load.

A quantised Linear `X` is stored as three tensors: `X.weight` (int8, [out, in]), `X.weight_scale` (float32,
one scale per output row, [out, 1], or one for the matrix) and `X.comfy_quant` (the bytes of a JSON
object, e.g. `{"format": "int8_tensorwise", "convrot": true, "convrot_groupsize": 256}`). With `convrot`
the matrix was rotated before quantising: each run of `convrot_groupsize` input columns multiplied by the
normalised Hadamard matrix built as Kronecker powers of the regular 4×4 one
([[1,1,1,-1],[1,1,-1,1],[1,-1,1,1],[-1,1,1,1]] / 2), so the int8 grid suits the flattened outliers. That
matrix is symmetric and orthogonal (its own inverse), so the weight is `(int8 × scale)` with each group
multiplied by it once more. ComfyUI's fp8mixed files (Flux.2) mark their fp8 matrices the same way
(`float8_e4m3fn`, a per-tensor `weight_scale`, an `input_scale` Loom does not need): read as fp8 × scale.
Other formats (nvfp4, mxfp8, int4 ConvRot) are refused by name.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from functools import cache
from types import SimpleNamespace
from typing import Any

from engine.models.errors import UnsupportedModelError

QUANT_SUFFIX = ".comfy_quant"
SCALE_SUFFIX = "_scale"
SUPPORTED_FORMATS = ("int8_tensorwise", "float8_e4m3fn", "float8_e5m2")


def is_quantised(keys: Any) -> bool:
    return any(str(k).endswith(QUANT_SUFFIX) for k in keys)


@cache
def hadamard(size: int) -> Any:
    """The normalised regular Hadamard matrix of `size` (a power of 4) as float32."""
    import torch

    base = torch.tensor([[1, 1, 1, -1], [1, 1, -1, 1], [1, -1, 1, 1], [-1, 1, 1, 1]], dtype=torch.float32)
    if size < 4 or size & (size - 1) or (size.bit_length() - 1) % 2:
        raise UnsupportedModelError(f"int8 ConvRot group size {size} is not a power of 4")
    matrix = base
    while matrix.shape[0] < size:
        matrix = torch.kron(matrix, base)
    return matrix / size**0.5


def config_of(raw: Any) -> dict[str, Any]:
    """The JSON object a `.comfy_quant` tensor holds."""
    return dict(json.loads(bytes(raw.flatten().tolist()).decode("utf-8")))


def dequantise(weight: Any, scale: Any, config: Mapping[str, Any], name: str) -> Any:
    """The float32 matrix of one quantised Linear."""
    fmt = config.get("format")
    if fmt not in SUPPORTED_FORMATS:
        raise UnsupportedModelError(
            f"{name}: quantised as {fmt!r}, which Loom cannot dequantise (it reads {SUPPORTED_FORMATS})"
        )
    out = (
        weight.float() * scale.float().reshape(-1, 1) if scale.numel() > 1 else weight.float() * scale.float()
    )
    if config.get("convrot"):
        group = int(config.get("convrot_groupsize", 256))
        rows, cols = out.shape
        if cols % group:
            raise UnsupportedModelError(f"{name}: {cols} input columns are no multiple of group {group}")
        out = (out.reshape(rows, cols // group, group) @ hadamard(group)).reshape(rows, cols)
    return out


class Dequantised(Mapping[str, Any]):
    """`state` with each quantised weight dequantised when read (to `dtype`) and its scale and
    quantisation record hidden."""

    def __init__(self, state: Mapping[str, Any], dtype: Any) -> None:
        self.state, self.dtype = state, dtype
        keys = list(state)
        self.quantised = {k.removesuffix(QUANT_SUFFIX) + ".weight" for k in keys if k.endswith(QUANT_SUFFIX)}
        hidden = {w + SCALE_SUFFIX for w in self.quantised} | {k for k in keys if k.endswith(QUANT_SUFFIX)}
        self._keys = [k for k in keys if k not in hidden]
        self._known = set(self._keys)

    @property
    def header(self) -> Any:
        """The file's header without the hidden entries, so shapes are read without reading tensors
        (engine.models.lazy_view.shapes_of); None for in-memory state."""
        inner = getattr(self.state, "header", None)
        if inner is None:
            return None
        shapes = {k: v for k, v in inner.shapes.items() if k in self._known}
        locations = {k: v for k, v in inner.locations.items() if k in self._known}
        return SimpleNamespace(shapes=shapes, locations=locations)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def __getitem__(self, key: str) -> Any:
        if key not in self.quantised:
            return self.state[key]
        layer = key.removesuffix(".weight")
        config = config_of(self.state[layer + QUANT_SUFFIX])
        scale_key = key + SCALE_SUFFIX
        if scale_key not in self.state:
            raise UnsupportedModelError(f"{key}: quantised weight without its {scale_key}")
        return dequantise(self.state[key], self.state[scale_key], config, key).to(self.dtype)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def dequantised(state: Mapping[str, Any], dtype: Any) -> Mapping[str, Any]:
    """`state` itself when nothing in it is quantised, else its dequantising view."""
    return Dequantised(state, dtype) if is_quantised(state) else state
