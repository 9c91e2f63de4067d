"""Image batch nodes: repeat, pick and regroup images."""

from __future__ import annotations

from typing import Annotated

from engine.native import Image, Input, Node


class RepeatImageBatch(Node):
    """Repeat the whole batch `amount` times."""

    category = "image/batch"

    def run(
        self,
        image: Annotated[Image, Input("The batch.")],
        amount: Annotated[int, Input("How many copies.", min=1, max=4096)] = 1,
    ) -> Image:
        return image.repeat((amount, 1, 1, 1))


class ImageFromBatch(Node):
    """Take `length` images starting at `batch_index` (both clamped to the batch)."""

    category = "image/batch"

    def run(
        self,
        image: Annotated[Image, Input("The batch.")],
        batch_index: Annotated[int, Input("The first image taken.", min=0, max=4095)] = 0,
        length: Annotated[int, Input("How many images.", min=1, max=4096)] = 1,
    ) -> Image:
        start = min(image.shape[0] - 1, batch_index)
        return image[start : start + min(image.shape[0] - start, length)].clone()


class RebatchImages(Node):
    """Regroup a list of image batches into batches of `batch_size` (a list output: what follows runs once
    per batch). Images of different sizes cannot share a batch."""

    display_name = "Rebatch Images"
    category = "image/batch"
    input_is_list = True
    output_is_list = (True,)

    def run(
        self,
        images: Annotated[Image, Input("The batches.")],
        batch_size: Annotated[int, Input("Images per output batch.", min=1, max=4096)] = 1,
    ) -> Image:
        import torch

        size = batch_size[0] if isinstance(batch_size, list) else batch_size
        singles = [batch[i : i + 1] for batch in images for i in range(batch.shape[0])]
        return [torch.cat(singles[i : i + size]) for i in range(0, len(singles), size)]
