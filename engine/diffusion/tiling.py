"""Run a function over overlapping tiles of a tensor and blend the results (ComfyUI's `tiled_scale`).

The function maps a tile [1, C, *size] to [1, out_channels, *size·scale] (a VAE decoder scales up, an
encoder down). Tiles start every `tile - overlap` positions; each result is weighted by a mask that
ramps from 1/feather to 1 over the feathered border on every side, and the weighted sum is divided by
the summed weights, so overlaps blend smoothly and a tensor that fits one tile is passed through whole.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

Scale = float | Callable[[float], float]


def tiled_scale_steps(width: int, height: int, tile_x: int, tile_y: int, overlap: int) -> int:
    """How many tiles `tiled_scale` runs for one image (for progress bars)."""
    rows = 1 if height <= tile_y else math.ceil((height - overlap) / (tile_y - overlap))
    cols = 1 if width <= tile_x else math.ceil((width - overlap) / (tile_x - overlap))
    return rows * cols


def _per_dim(value: Any, dims: int) -> list[Any]:
    return list(value) if isinstance(value, (tuple, list)) else [value] * dims


@torch.inference_mode()
def tiled_scale_multidim(
    samples: torch.Tensor,
    function: Callable[[torch.Tensor], torch.Tensor],
    tile: Sequence[int] = (64, 64),
    overlap: int | Sequence[int] = 8,
    upscale_amount: Scale | Sequence[Scale] = 4,
    out_channels: int = 3,
    output_device: Any = "cpu",
    downscale: bool = False,
    index_formulas: Any = None,
    pbar: Any = None,
) -> torch.Tensor:
    """Apply `function` tile by tile over the trailing `len(tile)` dimensions of `samples`."""
    dims = len(tile)
    amounts = _per_dim(upscale_amount, dims)
    overlaps = _per_dim(overlap, dims)
    positions_scale = _per_dim(index_formulas if index_formulas is not None else upscale_amount, dims)

    def scaled(values: Sequence[Scale], dim: int, value: float) -> float:
        factor = values[dim]
        if callable(factor):
            return factor(value)
        return value / factor if downscale else value * factor

    def out_size(shape: Sequence[int]) -> list[int]:
        return [round(scaled(amounts, d, shape[d])) for d in range(dims)]

    spatial = samples.shape[2:]
    output = torch.empty([samples.shape[0], out_channels, *out_size(spatial)], device=output_device)
    for b in range(samples.shape[0]):
        item = samples[b : b + 1]
        if all(spatial[d] <= tile[d] for d in range(dims)):
            output[b : b + 1] = function(item).to(output_device)
            if pbar is not None:
                pbar.update(1)
            continue
        total = torch.zeros([1, out_channels, *out_size(spatial)], device=output_device)
        weight = torch.zeros_like(total)
        starts = [
            range(0, spatial[d] - overlaps[d], tile[d] - overlaps[d]) if spatial[d] > tile[d] else [0]
            for d in range(dims)
        ]
        for corner in itertools.product(*starts):
            part, offsets = item, []
            for d in range(dims):
                start = max(0, min(spatial[d] - overlaps[d], corner[d]))
                part = part.narrow(d + 2, start, min(tile[d], spatial[d] - start))
                offsets.append(round(scaled(positions_scale, d, start)))
            result = function(part).to(output_device)
            mask = _feather_mask(result, [round(scaled(amounts, d, overlaps[d])) for d in range(dims)])
            target, target_weight = total, weight
            for d in range(dims):
                target = target.narrow(d + 2, offsets[d], mask.shape[d + 2])
                target_weight = target_weight.narrow(d + 2, offsets[d], mask.shape[d + 2])
            target.add_(result * mask)
            target_weight.add_(mask)
            if pbar is not None:
                pbar.update(1)
        output[b : b + 1] = total / weight
    return output


def _feather_mask(result: torch.Tensor, feathers: list[int]) -> torch.Tensor:
    """Ones, ramping down to 1/feather over the `feather` outermost positions on both sides of each dim."""
    mask = torch.ones_like(result)
    for d, feather in enumerate(feathers, start=2):
        if feather >= mask.shape[d]:
            continue
        for t in range(feather):
            ramp = (t + 1) / feather
            mask.narrow(d, t, 1).mul_(ramp)
            mask.narrow(d, mask.shape[d] - 1 - t, 1).mul_(ramp)
    return mask


def tiled_scale(
    samples: torch.Tensor,
    function: Callable[[torch.Tensor], torch.Tensor],
    tile_x: int = 64,
    tile_y: int = 64,
    overlap: int = 8,
    upscale_amount: Scale = 4,
    out_channels: int = 3,
    output_device: Any = "cpu",
    pbar: Any = None,
) -> torch.Tensor:
    """`tiled_scale_multidim` over height and width of a [B, C, H, W] tensor."""
    return tiled_scale_multidim(
        samples,
        function,
        (tile_y, tile_x),
        overlap=overlap,
        upscale_amount=upscale_amount,
        out_channels=out_channels,
        output_device=output_device,
        pbar=pbar,
    )
