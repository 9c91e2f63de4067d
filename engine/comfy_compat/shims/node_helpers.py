"""ComfyUI's `node_helpers`: small helpers its nodes share and packs reuse."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import torch
from PIL import ImageFile, UnidentifiedImageError


def conditioning_set_values(
    conditioning: list[list[Any]], values: dict[str, Any] | None = None, append: bool = False
) -> list[list[Any]]:
    """A copy of CONDITIONING with `values` set in every entry's options (added to an existing value
    when `append`); the tensors are shared, the option dicts are new."""
    result = []
    for tensor, options in conditioning:
        updated = dict(options)
        for key, value in (values or {}).items():
            if append and updated.get(key) is not None:
                value = updated[key] + value
            updated[key] = value
        result.append([tensor, updated])
    return result


def pillow(fn: Callable[[Any], Any], arg: Any) -> Any:
    """Call a PIL function, retrying with truncated images allowed when PIL rejects the file."""
    try:
        return fn(arg)
    except (OSError, UnidentifiedImageError, ValueError):
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            return fn(arg)
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def hasher() -> Callable[..., Any]:
    """The hash ComfyUI uses for file contents by default (sha256)."""
    return hashlib.sha256


def string_to_torch_dtype(string: str) -> torch.dtype | None:
    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}.get(string)


def image_alpha_fix(destination: torch.Tensor, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make two IMAGE tensors agree on channels: drop the source's alpha, or give the destination an
    opaque one."""
    if destination.shape[-1] < source.shape[-1]:
        source = source[..., : destination.shape[-1]]
    elif destination.shape[-1] > source.shape[-1]:
        destination = torch.nn.functional.pad(destination, (0, 1))
        destination[..., -1] = 1.0
    return destination, source
