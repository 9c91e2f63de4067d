"""Textual-inversion embeddings: `embedding:name` in a prompt, files in models/embeddings.

A file holds one or more vectors that stand in for tokens of the prompt. The layouts in use:
A1111 `.pt` (`string_to_param: {"*": [n, width]}`), A1111 `.safetensors` (`emb_params`), SDXL files
with one tensor per text encoder (`clip_l`, `clip_g`), diffusers `.bin` (`{"<token>": [width]}`), old
lists of such dicts, and embeddings bundled in a LoRA (`bundle_emb.<name>.string_to_param.*`). Names are
looked up as ComfyUI does: the name as given, then with `.safetensors`, `.pt`, `.bin`, in every
embeddings folder and its subfolders, never outside them.
"""

from __future__ import annotations

import logging
import os
import threading
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("loom.embeddings")
EXTENSIONS = (".safetensors", ".pt", ".bin")

_cache: dict[tuple[str, int, int], Any] = {}
_cache_lock = threading.Lock()


class EmbeddingError(ValueError):
    """An embedding file that exists but holds no usable vectors."""


def find_embedding(name: str, directories: Sequence[str | Path]) -> Path | None:
    """The file `name` refers to, searching each folder and its subfolders; None if there is none."""
    for directory in _with_subfolders(directories):
        base = os.path.abspath(directory)
        candidate = os.path.abspath(os.path.join(base, name))
        try:
            if os.path.commonpath((base, candidate)) != base:
                continue  # `embedding:../x` must not leave the folder
        except ValueError:
            continue
        if os.path.isfile(candidate):
            return Path(candidate)
        for extension in EXTENSIONS:
            if os.path.isfile(candidate + extension):
                return Path(candidate + extension)
    return None


def _with_subfolders(directories: Sequence[str | Path]) -> list[str]:
    found: list[str] = []
    for directory in directories:
        found.append(str(directory))
        for root, _, _ in os.walk(directory, followlinks=True):
            if root != str(directory):
                found.append(root)
    return found


def load_embedding(path: Path, width: int, key: str) -> Any:
    """The vectors [n, width-or-other] of an embedding file for the text encoder named `key`."""
    stat = path.stat()
    cache_key = (str(path), stat.st_mtime_ns, stat.st_size)
    with _cache_lock:
        state = _cache.get(cache_key)
    if state is None:
        state = _read(path)
        with _cache_lock:
            _cache[cache_key] = state
    return _vectors(state, width, key, path.name)


def _read(path: Path) -> Any:
    import torch

    if path.suffix.lower() == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickles with foreign classes: fall back to the raw tensor data
        return _raw_zip_tensor(path)


def _raw_zip_tensor(path: Path) -> Any:
    """The float32 vectors stored in a torch zip file whose pickle cannot be loaded safely.

    Embeddings hold one tensor whose width is 768 (SD1.x) or 1024 (SD2.x); it is the last data record
    large enough to be one.
    """
    import torch

    with zipfile.ZipFile(path) as archive:
        for name in reversed([n for n in archive.namelist() if "data/" in n]):
            data = archive.read(name)
            count = len(data) // 4
            if count < 768:
                continue
            width = 768 if count % 768 == 0 else 1024
            tensor = torch.frombuffer(bytearray(data), dtype=torch.float32)
            return tensor.reshape(count // width, width).clone()
    raise EmbeddingError(f"{path.name}: no embedding vectors found in the file")


def _vectors(state: Any, width: int, key: str, name: str) -> Any:
    import torch

    if isinstance(state, torch.Tensor):
        return state
    if isinstance(state, list):
        rows = [
            t.reshape(-1, t.shape[-1])
            for entry in state
            for t in entry.values()
            if isinstance(t, torch.Tensor) and t.shape[-1] == width
        ]
        if rows:
            return torch.cat(rows)
        raise EmbeddingError(f"{name}: no vectors of width {width} in the file")
    if not isinstance(state, dict):
        raise EmbeddingError(f"{name}: not an embedding file (found {type(state).__name__})")
    if "string_to_param" in state:
        return next(iter(state["string_to_param"].values()))
    if key in state:
        return state[key]
    for suffix in (".string_to_param.*", f".{key}"):
        bundled = [v for k, v in state.items() if k.startswith("bundle_emb.") and k.endswith(suffix)]
        if bundled:
            return torch.cat(bundled)
    tensors = [v for v in state.values() if isinstance(v, torch.Tensor)]
    if not tensors:
        raise EmbeddingError(f"{name}: no tensors in the file")
    return tensors[0]
