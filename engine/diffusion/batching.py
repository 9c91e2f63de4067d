"""Fitting a tensor to a batch size, as ComfyUI's `repeat_to_batch_size` does everywhere (conditioning,
references, masks, control hints, composites)."""

from __future__ import annotations

from typing import Any


def repeat_to_batch(tensor: Any, batch: int, dim: int = 0) -> Any:
    """`tensor` cut or repeated (whole batches) along `dim` to `batch` (ComfyUI's repeat_to_batch_size)."""
    size = tensor.shape[dim]
    if size > batch:
        return tensor.narrow(dim, 0, batch)
    if size < batch:
        repeats = [1] * tensor.ndim
        repeats[dim] = -(-batch // size)
        return tensor.repeat(repeats).narrow(dim, 0, batch)
    return tensor
