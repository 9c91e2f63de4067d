"""Reading state dicts from single files: header checks first, so damage gives a clear error.

`read_header` parses a .safetensors header without torch (fast: used for detection and validation).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import CorruptModelError, ModelLoadError

if TYPE_CHECKING:
    import torch

SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
_DTYPE_SIZES = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
}
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class SafetensorsHeader:
    """Tensor shapes and the free-form string metadata of a .safetensors file."""

    shapes: dict[str, tuple[int, ...]]
    metadata: dict[str, str]


def read_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate the header of a .safetensors file, checking every tensor lies inside the file."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CorruptModelError(f"{path}: {size} bytes is too short to be a .safetensors file")
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > min(size - 8, _MAX_HEADER):
                raise CorruptModelError(
                    f"{path}: header claims {header_len} bytes but the file has {size} bytes; "
                    "it is truncated or not a .safetensors file"
                )
            raw = f.read(header_len)
    except OSError as exc:
        raise ModelLoadError(f"{path}: cannot read: {exc}") from exc
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptModelError(f"{path}: the .safetensors header is not valid JSON ({exc})") from exc
    if not isinstance(header, dict):
        raise CorruptModelError(f"{path}: the .safetensors header is not a JSON object")
    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - header_len
    shapes: dict[str, tuple[int, ...]] = {}
    for name, info in header.items():
        try:
            dtype, shape, (begin, end) = info["dtype"], tuple(info["shape"]), info["data_offsets"]
            numel = 1
            for dim in shape:
                numel *= int(dim)
            expected = numel * _DTYPE_SIZES[dtype]
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptModelError(f"{path}: bad header entry for tensor {name!r}: {info!r}") from exc
        if end > data_len:
            raise CorruptModelError(
                f"{path}: tensor {name!r} ends at byte {end} of the data but the file holds only "
                f"{data_len} bytes of data; the file is truncated"
            )
        if end - begin != expected:
            raise CorruptModelError(f"{path}: tensor {name!r} has {end - begin} bytes, expected {expected}")
        shapes[name] = shape
    return SafetensorsHeader(shapes, {str(k): str(v) for k, v in metadata.items()})


def load_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every tensor of a single-file checkpoint, with its metadata (empty for pickles).

    Pickle formats are read only with `torch.load(weights_only=True)`, which refuses arbitrary code.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES and not path.is_file():
        raise ModelLoadError(f"{path}: cannot read: no such file")
    if suffix in SAFETENSORS_SUFFIXES:
        header = read_header(path)
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), header.metadata
        except SafetensorError as exc:
            raise CorruptModelError(f"{path}: {exc}") from exc
    if suffix in PICKLE_SUFFIXES:
        return _load_pickle(path), {}
    raise ModelLoadError(f"{path}: unknown model file type {suffix!r}; expected .safetensors, .ckpt or .pt")


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or unsafe pickles; all mean "unreadable"
        raise CorruptModelError(
            f"{path}: cannot be read as a weights-only torch checkpoint (truncated, damaged, or it "
            f"contains code objects, which Loom refuses to run): {str(exc).splitlines()[0]}"
        ) from exc
    if isinstance(loaded, dict) and isinstance(loaded.get("state_dict"), dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict):
        raise CorruptModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
