"""Reading state dicts from single files: header checks first, so damage gives a clear error.

`read_header` parses a .safetensors header without torch (fast: used for detection and validation).
`open_state_dict` gives a lazy mapping whose tensors are read from the file only when a key is looked up,
straight into their final dtype (converted from a memory map of the file): a checkpoint costs one copy
of its weights in memory, never two.
"""

from __future__ import annotations

import contextlib
import json
import struct
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
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
    # Where each tensor lies: (safetensors dtype name, absolute byte offset in the file, byte length).
    locations: dict[str, tuple[str, int, int]] = field(default_factory=dict, compare=False)


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
    locations: dict[str, tuple[str, int, int]] = {}
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
        locations[name] = (dtype, 8 + header_len + begin, end - begin)
    return SafetensorsHeader(shapes, {str(k): str(v) for k, v in metadata.items()}, locations)


class LazyStateDict(Mapping[str, "torch.Tensor"]):
    """The tensors of a .safetensors file, each read from disk when its key is looked up.

    A tensor converted to `dtype` is converted straight from a memory map of the file (the page cache),
    so the only new memory is the converted tensor. A tensor kept in the file's dtype (not floating, or
    already `dtype`, or under one of the `keep` key prefixes) is read with one `readinto` into memory
    torch owns (aligned, writable): no view of the map outlives the lookup, so the process's peak memory
    is the weights in their final dtype plus one tensor in flight. Every lookup reads anew: keep what
    you need.
    """

    def __init__(
        self,
        path: Path,
        header: SafetensorsHeader,
        dtype: torch.dtype | None = None,
        keep: tuple[str, ...] = (),
    ) -> None:
        self.path = path
        self.header = header
        self.dtype = dtype
        self.keep = keep
        self._map: Any = None
        self._pages: Any = None
        self._map_lock = threading.Lock()

    def source_dtype(self, key: str) -> torch.dtype:
        """The dtype `key` has in the file."""
        return _torch_dtype(self.header.locations[key][0])

    def __getitem__(self, key: str) -> torch.Tensor:
        kind, offset, length = self.header.locations[key]
        source = _torch_dtype(kind)
        shape = self.header.shapes[key]
        converting = (
            self.dtype is not None
            and source.is_floating_point
            and source != self.dtype
            and not key.startswith(self.keep)
        )
        if converting and offset % source.itemsize == 0 and length:
            view = self._mapped()[offset : offset + length].view(source).reshape(shape)
            converted = view.to(self.dtype)
            self._release(offset, length)
            return converted
        raw = self._read(key, offset, length)
        tensor = raw.view(source).reshape(shape)
        return tensor.to(self.dtype) if converting else tensor

    def _read(self, key: str, offset: int, length: int) -> torch.Tensor:
        import torch

        raw = torch.empty(length, dtype=torch.uint8)
        try:
            with self.path.open("rb") as f:
                f.seek(offset)
                got = f.readinto(raw.numpy())  # type: ignore[arg-type]  # numpy arrays are buffers
        except OSError as exc:
            raise ModelLoadError(f"{self.path}: cannot read tensor {key!r}: {exc}") from exc
        if got != length:
            raise CorruptModelError(f"{self.path}: tensor {key!r} is cut short ({got} of {length} bytes)")
        return raw

    def _mapped(self) -> torch.Tensor:
        """The whole file as a uint8 tensor over a private (copy-on-write, never written) memory map."""
        import mmap

        import torch

        with self._map_lock:
            if self._map is None:
                try:
                    with self.path.open("rb") as f:
                        pages = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
                except (OSError, ValueError) as exc:
                    raise ModelLoadError(f"{self.path}: cannot map the file: {exc}") from exc
                self._pages = pages
                self._map = torch.frombuffer(pages, dtype=torch.uint8)
            mapped: torch.Tensor = self._map
            return mapped

    def _release(self, offset: int, length: int) -> None:
        """Drop the mapped pages just read from this process's memory (they stay in the page cache), so
        a load's peak RSS does not count the file on top of the converted weights."""
        import mmap

        start = offset - offset % mmap.PAGESIZE
        # Without madvise (not Linux) the pages go when the map does.
        with contextlib.suppress(AttributeError, OSError, ValueError):
            self._pages.madvise(mmap.MADV_DONTNEED, start, offset + length - start)

    def __iter__(self) -> Iterator[str]:
        return iter(self.header.shapes)

    def __len__(self) -> int:
        return len(self.header.shapes)


def _torch_dtype(kind: str) -> torch.dtype:
    import torch

    names = {
        "BOOL": "bool",
        "U8": "uint8",
        "I8": "int8",
        "F8_E4M3": "float8_e4m3fn",
        "F8_E5M2": "float8_e5m2",
        "I16": "int16",
        "U16": "uint16",
        "F16": "float16",
        "BF16": "bfloat16",
        "I32": "int32",
        "U32": "uint32",
        "F32": "float32",
        "I64": "int64",
        "U64": "uint64",
        "F64": "float64",
    }
    return getattr(torch, names[kind])


def open_state_dict(
    path: str | Path, dtype: torch.dtype | None = None, keep: tuple[str, ...] = ()
) -> tuple[Mapping[str, torch.Tensor], dict[str, str]]:
    """A single-file checkpoint's tensors as a mapping, with its metadata (empty for pickles).

    .safetensors files give a `LazyStateDict` (nothing read until looked up); pickles are loaded with
    `torch.load(mmap=True, weights_only=True)`, so their tensors stay file-backed until converted. With
    `dtype`, floating tensors come out in it (converted once, on lookup), except a .safetensors file's
    tensors under the `keep` key prefixes, which stay in the file's dtype.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SAFETENSORS_SUFFIXES:
        header = read_header(path)
        return LazyStateDict(path, header, dtype, keep), header.metadata
    if suffix in PICKLE_SUFFIXES:
        if not path.is_file():
            raise ModelLoadError(f"{path}: cannot read: no such file")
        state = _load_pickle(path)
        if dtype is not None:
            state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
        return state, {}
    raise ModelLoadError(f"{path}: unknown model file type {suffix!r}; expected .safetensors, .ckpt or .pt")


def load_state_dict(
    path: str | Path, dtype: torch.dtype | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load every tensor of a single-file checkpoint, with its metadata (empty for pickles).

    Pickle formats are read only with `torch.load(weights_only=True)`, which refuses arbitrary code.
    """
    state, metadata = open_state_dict(path, dtype)
    return dict(state.items()), metadata


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import torch

    try:
        loaded: Any = _torch_load(torch, path)
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


def _torch_load(torch: Any, path: Path) -> Any:
    """`torch.load` memory-mapped where the file is a zip archive (the format since torch 1.6)."""
    import zipfile

    mmap = zipfile.is_zipfile(path)
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
