"""Flux's extra inputs beyond the prompt: reference latents (Flux Kontext) and a switched-off guidance.

Reference latents (ReferenceLatent) become extra image tokens after the image's own: the model attends
to them and only the image's tokens are kept from its output. Their position ids place them as
ComfyUI's Flux does (`reference_latents_method`): `offset` puts every reference in the first extra
plane (id 0 = 1), each beside or below the ones before, whichever keeps the layout squarer; `index`
gives each reference its own plane (1, 2, ...) at the origin; `uxo` keeps them in the image's plane
(0), diagonally past the image and the references before.

Flux Fill, Canny and Depth take more input channels than the latent's 16: the conditioning image's latent
(`concat_latent_image`: InstructPixToPixConditioning, InpaintModelConditioning), model-scaled and fitted to
the latent, and for Fill also the mask (`concat_mask`), each 8×8 block of pixels folded into 64 channels.

A guidance of None (FluxDisableGuidance) runs the model without its guidance embedding: ComfyUI skips
adding it, which equals adding zero, so the embedding's output is zeroed for those rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

PATCH = 2
METHODS = ("offset", "index", "uxo")


def placements(
    sizes: list[tuple[int, int]], image_rows: int, image_cols: int, method: str
) -> list[tuple[int, int, int]]:
    """(plane index, row offset, column offset) in latent pixels for references of these (height, width)
    beside an image of image_rows × image_cols tokens."""
    if method == "index_timestep_zero":
        raise ValueError(
            "reference_latents_method 'index_timestep_zero' is not supported by Loom's Flux: it runs the "
            "reference tokens with the modulation of timestep 0, and diffusers' Flux transformer, which Loom "
            "runs, modulates every image token alike; use 'index'"
        )
    if method not in METHODS:
        raise ValueError(f"reference_latents_method must be one of {', '.join(METHODS)}, got {method!r}")
    out = []
    height = width = index = 0
    for ref_h, ref_w in sizes:
        if method == "index":
            index += 1
            out.append((index, 0, 0))
        elif method == "uxo":
            out.append((0, image_rows * PATCH + height, image_cols * PATCH + width))
            height, width = height + ref_h, width + ref_w
        else:
            row, col = (0, width) if ref_h + height > ref_w + width else (height, 0)
            out.append((1, row, col))
            height, width = max(height, ref_h + row), max(width, ref_w + col)
    return out


def position_ids(rows: int, cols: int, index: int, row: int, col: int, like: Any) -> Any:
    """[rows·cols, 3] ids (plane, row, column) of a token grid whose offsets are in latent pixels."""
    import torch

    ids = torch.zeros((rows, cols, 3), device=like.device, dtype=like.dtype)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(rows, device=like.device, dtype=like.dtype)[:, None] + (row + 1) // PATCH
    ids[..., 2] = torch.arange(cols, device=like.device, dtype=like.dtype)[None, :] + (col + 1) // PATCH
    return ids.reshape(-1, 3)


def reference_tokens(
    references: list[Any], method: str, image_rows: int, image_cols: int, batch: int, pack: Any, like: Any
) -> tuple[Any, Any]:
    """The references as packed tokens [batch, n, 4C] and their ids [n, 3]; `pack` is the model's
    patch packing ([B, C, H, W] → (tokens, rows, cols))."""
    import torch

    sizes = [(int(r.shape[-2]), int(r.shape[-1])) for r in references]
    tokens, ids = [], []
    for ref, (index, row, col) in zip(
        references, placements(sizes, image_rows, image_cols, method), strict=True
    ):
        packed, rows, cols = pack(ref.to(like.device, like.dtype))
        tokens.append(packed.expand(batch, -1, -1) if packed.shape[0] == 1 else packed)
        ids.append(position_ids(rows, cols, index, row, col, like))
    return torch.cat(tokens, dim=1), torch.cat(ids)


def signature(entry_refs: tuple[tuple[Any, ...], str]) -> tuple[Any, ...]:
    """What must match for two entries' references to share one model call."""
    references, method = entry_refs
    return (method, tuple(id(r) for r in references))


@contextmanager
def guidance_switched_off(transformer: Any, disabled: Any) -> Iterator[None]:
    """Zero the guidance embedding of the rows where `disabled` (a [batch] bool tensor) is set."""
    if not bool(disabled.any()):
        yield
        return
    embedder = transformer.time_text_embed.guidance_embedder
    keep = (~disabled).reshape(-1, 1)
    handle = embedder.register_forward_hook(lambda _module, _args, output: output * keep.to(output.dtype))
    try:
        yield
    finally:
        handle.remove()


def concat_channels(model: Any, entries: list[dict[str, Any]], crop: Any, batch: int) -> Any:
    """The extra input channels of each entry, stacked: None for a model that takes only the latent."""
    import torch

    from engine.diffusion.model_inputs import fit_to_latent

    latent_channels = crop.shape[1]
    extra = model.diffusion_model.config.in_channels // (PATCH * PATCH) - latent_channels
    if extra <= 0:
        return None
    if extra not in (latent_channels, latent_channels + PATCH**2 * 16):
        raise ValueError(
            f"this Flux model takes {extra} input channels beside the latent; Loom knows Flux Canny/Depth "
            f"({latent_channels}) and Flux Fill ({latent_channels + 64})"
        )
    rows = crop[:batch]
    parts = []
    for entry in entries:
        image = entry.get("concat_latent_image")
        image = (
            torch.zeros_like(rows)
            if image is None
            else fit_to_latent(image.to(rows.device, rows.dtype), rows)
        )
        channels = [model.process_latent_in(image)]
        if extra > latent_channels:
            channels.append(_folded_mask(entry.get("concat_mask"), rows))
        parts.append(torch.cat(channels, dim=1))
    return torch.cat(parts)


def _folded_mask(mask: Any, rows: Any) -> Any:
    """The mask (ones if none) at the latent's size × 8, each 8×8 block folded into 64 channels."""
    import torch

    batch, _, height, width = rows.shape
    if mask is None:
        return torch.ones((batch, 64, height, width), device=rows.device, dtype=rows.dtype)
    from engine.diffusion.model_inputs import fit_to_latent

    mask = mask.to(rows.device, rows.dtype)
    mask = mask.reshape(-1, 1, *mask.shape[-2:]) if mask.ndim < 4 else mask.mean(dim=1, keepdim=True)
    mask = fit_to_latent(mask, torch.empty((batch, 1, height * 8, width * 8), device=rows.device))
    mask = mask.view(batch, height, 8, width, 8).permute(0, 2, 4, 1, 3)
    return mask.reshape(batch, 64, height, width)
