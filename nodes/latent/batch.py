"""Latent batch nodes: pick, repeat, join and rebatch latents, and how their noise is seeded.

"batch_index" on a LATENT says which seed offset each item's noise is drawn with, so an item taken out
of a batch is sampled with the same noise as inside it (ComfyUI's semantics).
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.diffusion.batching import repeat_to_batch
from engine.native import Input, Latent, Node
from nodes.image.basic import upscale

SEED_BEHAVIORS = ("random", "fixed")


class LatentFromBatch(Node):
    """Take `length` latents starting at `batch_index` (clamped to the batch), keeping their noise seeds."""

    display_name = "Latent From Batch"
    category = "latent/batch"

    def run(
        self,
        samples: Annotated[Latent, Input("The batch.")],
        batch_index: Annotated[int, Input("The first item taken.", min=0, max=63)] = 0,
        length: Annotated[int, Input("How many items.", min=1, max=64)] = 1,
    ) -> Latent:
        latents = samples["samples"]
        start = min(latents.shape[0] - 1, batch_index)
        length = min(latents.shape[0] - start, length)
        out = dict(samples)
        out["samples"] = latents[start : start + length].clone()
        if "noise_mask" in samples:
            masks = samples["noise_mask"]
            if masks.shape[0] == 1:
                out["noise_mask"] = masks.clone()
            else:
                masks = (
                    repeat_to_batch(masks, latents.shape[0]) if masks.shape[0] < latents.shape[0] else masks
                )
                out["noise_mask"] = masks[start : start + length].clone()
        indices = samples.get("batch_index", list(range(latents.shape[0])))
        out["batch_index"] = list(indices[start : start + length])
        return out


class RepeatLatentBatch(Node):
    """Repeat the whole batch `amount` times; batch indices continue after the original ones."""

    display_name = "Repeat Latent Batch"
    category = "latent/batch"

    def run(
        self,
        samples: Annotated[Latent, Input("The batch.")],
        amount: Annotated[int, Input("How many copies.", min=1, max=64)] = 1,
    ) -> Latent:
        latents = samples["samples"]
        out = dict(samples)
        out["samples"] = latents.repeat((amount,) + (1,) * (latents.ndim - 1))
        masks = samples.get("noise_mask")
        if masks is not None and masks.shape[0] > 1:
            out["noise_mask"] = masks.repeat((amount,) + (1,) * (masks.ndim - 1))
        if "batch_index" in samples:
            indices = list(samples["batch_index"])
            offset = max(indices) - min(indices) + 1
            out["batch_index"] = indices + [i + copy * offset for copy in range(1, amount) for i in indices]
        return out


class LatentBatch(Node):
    """Join two batches; the second is resized to the first if their sizes differ."""

    category = "latent/batch"

    def run(
        self,
        samples1: Annotated[Latent, Input("The first batch.")],
        samples2: Annotated[Latent, Input("The batch appended after it.")],
    ) -> Latent:
        import torch

        first, second = samples1["samples"], samples2["samples"]
        if first.shape[1:] != second.shape[1:]:
            second = upscale(second, first.shape[-1], first.shape[-2], "bilinear", "center")
        out = dict(samples1)
        out["samples"] = torch.cat((first, second), dim=0)
        out["batch_index"] = list(samples1.get("batch_index", range(first.shape[0]))) + list(
            samples2.get("batch_index", range(second.shape[0]))
        )
        return out


class LatentBatchSeedBehavior(Node):
    """ "fixed": every item gets the first item's noise; "random": each its own (the batch indices go)."""

    category = "latent/advanced"

    def run(
        self,
        samples: Annotated[Latent, Input("The batch.")],
        seed_behavior: Annotated[
            str, Input("How the items' noise is seeded.", choices=SEED_BEHAVIORS, publish_default=True)
        ] = "fixed",
    ) -> Latent:
        out = dict(samples)
        if seed_behavior == "random":
            out.pop("batch_index", None)
        else:
            first = samples.get("batch_index", [0])[0]
            out["batch_index"] = [first] * samples["samples"].shape[0]
        return out


class RebatchLatents(Node):
    """Regroup a list of latent batches into batches of `batch_size` (a list output: what follows runs
    once per batch). Batches of different sizes are never mixed; each keeps its noise seeds and masks."""

    display_name = "Rebatch Latents"
    category = "latent/batch"
    input_is_list = True
    output_is_list = (True,)

    def run(
        self,
        latents: Annotated[Latent, Input("The batches.")],
        batch_size: Annotated[int, Input("Items per output batch.", min=1, max=4096)] = 1,
    ) -> Latent:
        size = batch_size[0] if isinstance(batch_size, list) else batch_size
        groups: list[list[_Item]] = []
        offset = 0
        for latent in latents:
            items = _items(latent, offset)
            offset += len(items)
            if groups and groups[-1] and groups[-1][0].samples.shape[-2:] == items[0].samples.shape[-2:]:
                groups[-1].extend(items)
            else:
                groups.append(items)
        return [_batch(group[i : i + size]) for group in groups for i in range(0, len(group), size)]


class _Item:
    def __init__(self, samples: Any, mask: Any, index: int) -> None:
        self.samples, self.mask, self.index = samples, mask, index


def _items(latent: dict[str, Any], offset: int) -> list[_Item]:
    """One entry per batch item: its latent, its noise mask (ones where there is none) and seed index."""
    import torch
    import torch.nn.functional as F

    samples = latent["samples"]
    count, height, width = samples.shape[0], samples.shape[-2], samples.shape[-1]
    mask = latent.get("noise_mask")
    if mask is None:
        mask = torch.ones((count, 1, height * 8, width * 8))
    else:
        mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1])
        if mask.shape[-2:] != (height * 8, width * 8):
            mask = F.interpolate(mask, size=(height * 8, width * 8), mode="bilinear")
        mask = repeat_to_batch(mask, count) if mask.shape[0] < count else mask
    indices = latent.get("batch_index", [offset + i for i in range(count)])
    return [_Item(samples[i : i + 1], mask[i : i + 1], indices[i]) for i in range(count)]


def _batch(items: list[_Item]) -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "samples": torch.cat([item.samples for item in items]),
        "batch_index": [item.index for item in items],
    }
    masks = torch.cat([item.mask for item in items])
    if masks.mean() != 1.0:  # an all-ones mask means "no mask"
        out["noise_mask"] = masks
    return out
