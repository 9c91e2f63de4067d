"""Re-batching images: a list of image batches regrouped into batches of a chosen size.

Written in ComfyUI's class convention because it consumes a whole list at once (INPUT_IS_LIST) and
produces a list (OUTPUT_IS_LIST), which Loom's native form does not express.
"""

from __future__ import annotations

from typing import Any

import torch


class RebatchImages:
    """Split every incoming batch into single images and regroup them into batches of `batch_size`
    (the last one may be smaller); images of another size are resized to the first one's."""

    INPUT_IS_LIST = True
    RETURN_TYPES = ("IMAGE",)
    OUTPUT_IS_LIST = (True,)
    FUNCTION = "rebatch"
    CATEGORY = "image/batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE",),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def rebatch(self, images: list[torch.Tensor], batch_size: list[int]) -> tuple[list[torch.Tensor]]:
        size = batch_size[0]
        singles = [batch[i : i + 1] for batch in images for i in range(batch.shape[0])]
        if not singles:
            return ([],)
        height, width = singles[0].shape[1:3]
        singles = [_resized(image, height, width) for image in singles]
        return ([torch.cat(singles[i : i + size]) for i in range(0, len(singles), size)],)


def _resized(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image.shape[1:3] == (height, width):
        return image
    moved = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(height, width), mode="bilinear")
    return moved.movedim(1, -1)


NODE_CLASS_MAPPINGS = {"RebatchImages": RebatchImages}
NODE_DISPLAY_NAME_MAPPINGS = {"RebatchImages": "Rebatch Images"}
