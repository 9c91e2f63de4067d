"""HyperTile (tfernd/HyperTile, as ComfyUI's nodes_hypertile runs it): self-attention queries are split
into tiles at the largest token grids, so attention costs less at high resolution.

An attn1 patch rearranges the queries of a block whose token count is the latent's area divided by
4**depth (depth up to max_depth) into nh x nw tiles, each at least tile_size / 8 latent pixels a side;
the output patch puts them back. Keys and values are left whole, so each query tile attends to one
equal share of the tokens in their order, exactly as in ComfyUI. The tile counts come from torch's
global generator, which sampling seeds from the noise seed (engine.sampling.noise), so a seed gives
the same tiling every run and the same as in ComfyUI.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Input, Model, Node


def random_divisor(value: int, min_value: int, max_options: int = 1) -> int:
    """value // d for a divisor d >= min_value of value, picked at random among the first max_options.

    As in ComfyUI, the index is drawn from [0, options - 1), so the last candidate is never chosen
    (and with two candidates the first always is); the draw still advances the global generator.
    """
    import torch

    min_value = min(min_value, value)
    divisors = [d for d in range(min_value, value + 1) if value % d == 0]
    counts = [value // d for d in divisors[:max_options]]
    index = int(torch.randint(low=0, high=len(counts) - 1, size=(1,)).item()) if len(counts) > 1 else 0
    return counts[index]


def tile_tokens(q: Any, nh: int, nw: int, h: int, w: int) -> Any:
    """(b, nh*th*nw*tw, c) → (b*nh*nw, th*tw, c): tokens read as an h x w grid, cut into tiles."""
    batch, _, channels = q.shape
    grid = q.reshape(batch, nh, h // nh, nw, w // nw, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch * nh * nw, (h // nh) * (w // nw), channels)


def untile_tokens(out: Any, nh: int, nw: int, h: int, w: int) -> Any:
    """The inverse of tile_tokens."""
    tiles, _, channels = out.shape
    grid = out.reshape(tiles // (nh * nw), nh, nw, h // nh, w // nw, channels)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(tiles // (nh * nw), h * w, channels)


class _HyperTilePatch:
    def __init__(self, tile_size: int, swap_size: int, max_depth: int, scale_depth: bool) -> None:
        self.latent_tile_size = max(32, tile_size) // 8
        self.swap_size = swap_size
        self.max_depth = max_depth
        self.scale_depth = scale_depth
        self.pending: tuple[int, int, int, int] | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _HyperTilePatch:
        return self  # the input and output patches must share the pending tiling across clones

    def tile(self, q: Any, k: Any, v: Any, extra_options: dict[str, Any]) -> tuple[Any, Any, Any]:
        shape = extra_options["original_shape"]
        tokens = q.shape[-2]
        depths = [(shape[-2] / 2**i) * (shape[-1] / 2**i) for i in range(self.max_depth + 1)]
        if tokens not in depths:
            return q, k, v
        aspect = shape[-1] / shape[-2]
        h, w = round(math.sqrt(tokens * aspect)), round(math.sqrt(tokens / aspect))
        factor = 2 ** depths.index(tokens) if self.scale_depth else 1
        nh = random_divisor(h, self.latent_tile_size * factor, self.swap_size)
        nw = random_divisor(w, self.latent_tile_size * factor, self.swap_size)
        if nh * nw > 1:
            q = tile_tokens(q, nh, nw, h, w)
            self.pending = (nh, nw, h, w)
        return q, k, v

    def untile(self, out: Any, extra_options: dict[str, Any]) -> Any:
        if self.pending is None:
            return out
        nh, nw, h, w = self.pending
        self.pending = None
        return untile_tokens(out, nh, nw, h, w)


class HyperTile(Node):
    """Tile self-attention at the largest resolutions so big images sample faster."""

    category = "model_patches/unet"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        tile_size: Annotated[int, Input("Smallest tile side, in image pixels.", min=1, max=2048)] = 256,
        swap_size: Annotated[
            int, Input("How many tile counts to choose from at random.", min=1, max=128)
        ] = 2,
        max_depth: Annotated[int, Input("How many levels below the top are tiled too.", min=0, max=10)] = 0,
        scale_depth: Annotated[bool, Input("Double the tile size at each deeper level.")] = False,
    ) -> Model:
        patch = _HyperTilePatch(tile_size, swap_size, max_depth, scale_depth)
        patched = model.clone()
        patched.set_model_attn1_patch(patch.tile)
        patched.set_model_attn1_output_patch(patch.untile)
        return patched
