"""ImageScaleToMaxDimension (ComfyUI's `comfy_extras.nodes_images`): resize so the longer side has a size."""

from __future__ import annotations

from typing import Annotated

from engine.native import Image, Input, Node
from nodes.image.basic import MAX_RESOLUTION

# ComfyUI's list, "bilinear" twice included: the front end shows it so.
METHODS = ("area", "lanczos", "bilinear", "nearest-exact", "bilinear", "bicubic")


def longest_side(width: int, height: int, size: int) -> tuple[int, int]:
    """(width, height) with the longer side `size` and the aspect ratio kept (rounded)."""
    if height > width:
        return round(width / height * size), size
    if width > height:
        return size, round(height / width * size)
    return size, size


class ImageScaleToMaxDimension(Node):
    """Resize images, keeping their aspect ratio, so that their longer side is `largest_size`."""

    category = "image/upscaling"

    def run(
        self,
        image: Annotated[Image, Input("The images.")],
        upscale_method: Annotated[str, Input("Resampling method.", choices=METHODS)],
        largest_size: Annotated[
            int, Input("The longer side afterwards.", min=0, max=MAX_RESOLUTION, step=1)
        ] = 512,
    ) -> Image:
        from nodes.image.basic import upscale

        width, height = longest_side(int(image.shape[2]), int(image.shape[1]), largest_size)
        return upscale(image.movedim(-1, 1), width, height, upscale_method).movedim(1, -1)
