"""Upscale models (ESRGAN, RealESRGAN, SwinIR, compact SRVGG, DAT, HAT...) loaded with spandrel,
the library ComfyUI uses, and run tile by tile with ComfyUI's tiling so memory stays bounded.

Tiling follows `comfy.utils.tiled_scale`: tiles of `tile` pixels overlapping by `overlap`, each
upscaled tile weighted by a mask that ramps linearly over the (scaled) overlap at its borders, the
sum divided by the summed masks. An image no larger than one tile is upscaled in one pass.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine.models.errors import CorruptModelError, UnsupportedModelError
from engine.models.files import PICKLE_SUFFIXES, load_state_dict

TILE = 512
OVERLAP = 32
MIN_TILE = 128
# SwinIR checkpoints saved from a DataParallel wrapper keep its "module." prefix (ComfyUI strips it too).
_WRAPPED_SWINIR_KEY = "module.layers.0.residual_group.blocks.0.norm1.weight"


def _read(path: Path) -> dict[str, Any]:
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        return dict(load_state_dict(path)[0])
    if not path.is_file():
        raise CorruptModelError(f"{path}: cannot read: no such file")
    try:
        # Upscaler .pth files often nest their weights under "params_ema" / "params"; spandrel unwraps those.
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged or unsafe pickles
        raise CorruptModelError(
            f"{path}: cannot be read as a weights-only torch checkpoint: {str(exc).splitlines()[0]}"
        ) from exc
    if not isinstance(loaded, dict):
        raise CorruptModelError(f"{path}: holds a {type(loaded).__name__}, not a state dict")
    return loaded


def load_upscale_model(path: str | Path) -> Any:
    """Read an upscale model file and return spandrel's `ImageModelDescriptor` (in eval mode, on CPU).

    Raises `UnsupportedModelError` naming the file when spandrel recognises no architecture in its
    keys, or when the architecture is not a single-image model (e.g. a face restorer's video form)."""
    path = Path(path)
    state_dict = _read(path)
    if _WRAPPED_SWINIR_KEY in state_dict:
        state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    import spandrel

    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state_dict)
    except spandrel.UnsupportedModelError as exc:
        raise UnsupportedModelError(
            f"{path.name}: not an upscale model spandrel {spandrel.__version__} recognises "
            "(ESRGAN, RealESRGAN, SwinIR, SRVGG, DAT, HAT, OmniSR, ...)"
        ) from exc
    except (KeyError, RuntimeError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path.name}: looks like an upscale model but its weights do not fit: {exc}"
        ) from exc
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise UnsupportedModelError(f"{path.name}: an upscale model must be a single-image model")
    return descriptor.eval()


def tiled_steps(width: int, height: int, tile: int, overlap: int) -> int:
    """How many tiles `tiled_scale` runs for one image (ComfyUI's get_tiled_scale_steps)."""
    rows = 1 if height <= tile else math.ceil((height - overlap) / (tile - overlap))
    cols = 1 if width <= tile else math.ceil((width - overlap) / (tile - overlap))
    return rows * cols


def _feather(tile_out: torch.Tensor, feather: int) -> torch.Tensor:
    """A mask over an upscaled tile that ramps 1/f, 2/f, ..., 1 over `feather` pixels at each border."""
    mask = torch.ones_like(tile_out)
    for dim in (2, 3):
        size = mask.shape[dim]
        if feather >= size:
            continue
        ramp = torch.arange(1, feather + 1, dtype=mask.dtype, device=mask.device) / feather
        shape = [1, 1, 1, 1]
        shape[dim] = feather
        mask.narrow(dim, 0, feather).mul_(ramp.view(shape))
        mask.narrow(dim, size - feather, feather).mul_(ramp.flip(0).view(shape))
    return mask


def tiled_scale(
    samples: torch.Tensor,
    function: Callable[[torch.Tensor], torch.Tensor],
    tile: int,
    overlap: int,
    scale: int,
    out_channels: int = 3,
    on_tile: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Apply `function` (an ×`scale` model on [B, C, H, W]) tile by tile and blend the overlaps."""
    batch, _, height, width = samples.shape
    output = torch.empty(batch, out_channels, height * scale, width * scale)
    for b in range(batch):
        image = samples[b : b + 1]
        if height <= tile and width <= tile:
            output[b : b + 1] = function(image).cpu()
            if on_tile:
                on_tile()
            continue
        total = torch.zeros(1, out_channels, height * scale, width * scale)
        weight = torch.zeros_like(total)
        rows = range(0, height - overlap, tile - overlap) if height > tile else [0]
        cols = range(0, width - overlap, tile - overlap) if width > tile else [0]
        for y, x in itertools.product(rows, cols):
            y, x = max(0, min(height - overlap, y)), max(0, min(width - overlap, x))
            h, w = min(tile, height - y), min(tile, width - x)
            out = function(image[:, :, y : y + h, x : x + w]).cpu()
            mask = _feather(out, overlap * scale)
            region = (
                slice(None),
                slice(None),
                slice(y * scale, (y + h) * scale),
                slice(x * scale, (x + w) * scale),
            )
            total[region] += out * mask
            weight[region] += mask
            if on_tile:
                on_tile()
        output[b : b + 1] = total / weight
    return output


def _is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.OutOfMemoryError) or "out of memory" in str(error).lower()


def _run_tiles(
    model: Any, samples: torch.Tensor, tile: int, overlap: int, progress: Callable[[int, int], None] | None
) -> torch.Tensor:
    total = samples.shape[0] * tiled_steps(samples.shape[3], samples.shape[2], tile, overlap)
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total)  # the node's ctx.progress also stops here on an interrupt

    with torch.inference_mode():
        return tiled_scale(samples, model, tile, overlap, model.scale, model.output_channels, step)


def upscale(
    model: Any,
    image: torch.Tensor,
    tile: int = TILE,
    overlap: int = OVERLAP,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Upscale IMAGE [B, H, W, C] in 0..1 with a spandrel descriptor; returns [B, H·s, W·s, C] clamped
    to 0..1. On out-of-memory the tile is halved (512 → 256 → 128), as ComfyUI does."""
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    model.to(device)
    samples = image.movedim(-1, 1).to(device)
    try:
        while True:
            try:
                result = _run_tiles(model, samples, tile, overlap, progress)
                break
            except (torch.OutOfMemoryError, RuntimeError) as error:
                if not _is_out_of_memory(error) or tile // 2 < MIN_TILE:
                    raise
                tile //= 2
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    finally:
        model.to("cpu")
    return torch.clamp(result.movedim(1, -1), 0.0, 1.0)
