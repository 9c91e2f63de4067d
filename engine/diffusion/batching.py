"""Fitting a tensor to a batch size, as ComfyUI's `repeat_to_batch_size` does everywhere (conditioning,
references, masks, control hints, composites), and the conditioning entries' reference latents stacked so."""

from __future__ import annotations

from collections.abc import Callable
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


def reference_shapes(entry: dict[str, Any]) -> tuple[Any, ...]:
    """The shapes of an entry's reference latents: entries batch together only when theirs match (their
    token counts; ComfyUI's CONDList), the models' `condition_key`."""
    return tuple(tuple(latent.shape) for latent in entry.get("reference_latents") or [])


def stacked_references(
    entries: list[dict[str, Any]], batch: int, process_in: Callable[[Any], Any], device: Any
) -> list[Any]:
    """Per reference index, the entries' `reference_latents` at that index in float32 on `device`, through
    `process_in` (the model's latent scaling) and fitted to `batch` rows, one entry after another:
    len(entries)·batch rows (the models' `condition_key` batches only entries whose references have the
    same shapes)."""
    import torch

    references = [entry.get("reference_latents") or [] for entry in entries]
    return [
        torch.cat([repeat_to_batch(process_in(refs[index].to(device).float()), batch) for refs in references])
        for index in range(len(references[0]))
    ]
