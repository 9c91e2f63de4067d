"""Image helpers, as native Loom nodes. IMAGE is a float tensor [batch, height, width, channels]."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Image, Input, Node


class ImageCropToMultiple(Node):
    """Crop an image (centred) so that width and height are multiples of a number, such as the 8 or
    64 that diffusion models need."""

    category = "toolbox/image"

    def run(
        self,
        image: Annotated[Image, Input("The image to crop.")],
        multiple: Annotated[int, Input("Width and height become multiples of this.", min=1, max=512)] = 8,
    ) -> Image:
        height, width = image.shape[1], image.shape[2]
        new_height, new_width = height - height % multiple, width - width % multiple
        if new_height == 0 or new_width == 0:
            raise ValueError(f"a {width}x{height} image is smaller than one multiple of {multiple}")
        top, left = (height - new_height) // 2, (width - new_width) // 2
        return image[:, top : top + new_height, left : left + new_width]


class ImageSolidColor(Node):
    """An image of one colour, given as hex (#RRGGBB)."""

    category = "toolbox/image"

    def run(
        self,
        width: Annotated[int, Input("Width in pixels.", min=1, max=16384)] = 512,
        height: Annotated[int, Input("Height in pixels.", min=1, max=16384)] = 512,
        color: Annotated[str, Input("Colour as #RRGGBB.")] = "#000000",
    ) -> Image:
        import torch

        red, green, blue = _rgb(color)
        pixel = torch.tensor([red, green, blue], dtype=torch.float32) / 255.0
        return pixel.expand(1, height, width, 3).clone()

    @classmethod
    def validate(cls, color: str = "#000000") -> bool | str:
        try:
            _rgb(color)
        except ValueError as exc:
            return str(exc)
        return True


def _rgb(color: Any) -> tuple[int, int, int]:
    text = str(color).lstrip("#")
    if len(text) != 6:
        raise ValueError(f"colour {color!r} is not #RRGGBB")
    try:
        return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)
    except ValueError:
        raise ValueError(f"colour {color!r} is not #RRGGBB") from None
