"""LatentCut and LatentCutToBatch (ComfyUI's newer `comfy_extras.nodes_latent`, not in 0.3.64): a slice of
a latent along its width, height or time (frames / layers), and a latent cut into equal pieces that
become the batch. The dimensions count from the end, so "t" is the frame axis of a 5-D [B, C, T, H, W]
latent (Qwen-Image Layered's layers) and "x", "y" work on 4-D latents too.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Latent, Node
from nodes.image.basic import MAX_RESOLUTION

FROM_END = {"x": 1, "y": 2, "t": 3}


def _axis(node: str, samples: Any, dim: str) -> int:
    axis = samples.ndim - FROM_END[dim]
    if axis < 0:
        raise ValueError(
            f"{node}: input 'samples' has {samples.ndim} dimensions, too few to cut along {dim!r}"
        )
    return axis


def cut(samples: Any, axis: int, index: int, amount: int) -> Any:
    """`amount` entries from `index` (negative counts from the end), clamped to what the axis holds."""
    size = samples.shape[axis]
    if index >= 0:
        index = min(index, size - 1)
        amount = min(size - index, amount)
    else:
        index = max(index, -size)
        amount = min(-index, amount)
        index += size
    return samples.narrow(axis, index, amount)


def cut_to_batch(samples: Any, axis: int, slice_size: int) -> Any:
    """Pieces of `slice_size` along `axis` stacked into the batch, piece by piece within each sample
    (entries past the last whole piece are dropped; a longer slice than the axis takes it whole)."""
    moved = samples.movedim(axis, 1)
    length = moved.shape[1]
    slice_size = min(slice_size, length)
    moved = moved[:, : length // slice_size * slice_size]
    return moved.reshape([-1, slice_size, *moved.shape[2:]]).movedim(1, axis)


class LatentCut(Node):
    """Cut a slice out of a latent along its width (x), height (y) or time / layers (t)."""

    category = "latent/advanced"

    def run(
        self,
        samples: Annotated[Latent, Input("The latent to crop.")],
        dim: Annotated[str, Input("The axis: x width, y height, t time.", choices=("x", "y", "t"))],
        index: Annotated[
            int,
            Input(
                "First entry; negative counts from the end.", min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1
            ),
        ] = 0,
        amount: Annotated[int, Input("Number of entries.", min=1, max=MAX_RESOLUTION, step=1)] = 1,
    ) -> Latent:
        tensor = samples["samples"]
        return {**samples, "samples": cut(tensor, _axis("LatentCut", tensor, dim), index, amount)}


class LatentCutToBatch(Node):
    """Cut a latent into equal slices along one axis and put the slices in the batch."""

    category = "latent/advanced"

    def run(
        self,
        samples: Annotated[Latent, Input("The latent to split into a batch.")],
        dim: Annotated[str, Input("The axis: t time, x width, y height.", choices=("t", "x", "y"))],
        slice_size: Annotated[int, Input("Entries per slice.", min=1, max=MAX_RESOLUTION, step=1)] = 1,
    ) -> Latent:
        tensor = samples["samples"]
        axis = _axis("LatentCutToBatch", tensor, dim)
        if axis < 2:  # the batch or channel axis: ComfyUI leaves the latent as it is
            return samples
        return {**samples, "samples": cut_to_batch(tensor, axis, slice_size)}
