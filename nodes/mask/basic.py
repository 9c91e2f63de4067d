"""ComfyUI's mask nodes. A MASK is a float tensor [batch, height, width], 1 where selected."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Image, Input, Mask, Node
from nodes.image.basic import MAX_RESOLUTION
from nodes.image.tensors import as_masks, window_extreme

PIXELS = Input("In pixels.", min=0, max=MAX_RESOLUTION, step=1)
SIZE = Input("In pixels.", min=1, max=MAX_RESOLUTION, step=1)
CHANNELS = ("red", "green", "blue", "alpha")
OPERATIONS = ("multiply", "add", "subtract", "and", "or", "xor")


class SolidMask(Node):
    """A mask of one value everywhere."""

    category = "mask"

    def run(
        self,
        *,
        value: Annotated[float, Input("The value of every pixel.", min=0.0, max=1.0, step=0.01)] = 1.0,
        width: Annotated[int, SIZE] = 512,
        height: Annotated[int, SIZE] = 512,
    ) -> Mask:
        import torch

        return torch.full((1, height, width), value, dtype=torch.float32)


class InvertMask(Node):
    """1 − mask."""

    category = "mask"

    def run(self, mask: Annotated[Mask, Input("The mask to invert.")]) -> Mask:
        return 1.0 - mask


class CropMask(Node):
    """Cut a rectangle out of a mask (clipped at its edges)."""

    category = "mask"

    def run(
        self,
        *,
        mask: Annotated[Mask, Input("The mask to crop.")],
        x: Annotated[int, PIXELS] = 0,
        y: Annotated[int, PIXELS] = 0,
        width: Annotated[int, SIZE] = 512,
        height: Annotated[int, SIZE] = 512,
    ) -> Mask:
        return as_masks(mask)[:, y : y + height, x : x + width]


class MaskComposite(Node):
    """Combine `source`, placed at (x, y), into `destination` with an arithmetic or logical operation;
    the result is clamped to 0..1. Logical operations round both masks to 0 or 1 first."""

    category = "mask"

    def run(
        self,
        *,
        destination: Annotated[Mask, Input("The mask combined into.")],
        source: Annotated[Mask, Input("The mask placed on it.")],
        x: Annotated[int, PIXELS] = 0,
        y: Annotated[int, PIXELS] = 0,
        operation: Annotated[str, Input("How the two are combined.", choices=OPERATIONS)],
    ) -> Mask:
        import torch

        output = as_masks(destination).clone()
        source = as_masks(source)
        right, bottom = (
            min(x + source.shape[-1], output.shape[-1]),
            min(y + source.shape[-2], output.shape[-2]),
        )
        if right <= x or bottom <= y:  # placed wholly outside the destination
            return torch.clamp(output, 0.0, 1.0)
        src = source[:, : bottom - y, : right - x]
        dst = output[:, y:bottom, x:right]
        output[:, y:bottom, x:right] = _combine(dst, src, operation)
        return torch.clamp(output, 0.0, 1.0)


def _combine(dst: Any, src: Any, operation: str) -> Any:
    if operation == "multiply":
        return dst * src
    if operation == "add":
        return dst + src
    if operation == "subtract":
        return dst - src
    a, b = dst.round().bool(), src.round().bool()
    logical = {"and": a & b, "or": a | b, "xor": a ^ b}
    if operation not in logical:
        raise ValueError(f"MaskComposite: operation {operation!r} is not one of {', '.join(OPERATIONS)}")
    return logical[operation].float()


class FeatherMask(Node):
    """Fade a mask's edges linearly to 0 over the given number of pixels on each side.

    As in ComfyUI, the right and bottom ramps start one row/column early: their first step scales
    the first column (row) instead of the last one."""

    category = "mask"

    def run(
        self,
        *,
        mask: Annotated[Mask, Input("The mask to feather.")],
        left: Annotated[int, PIXELS] = 0,
        top: Annotated[int, PIXELS] = 0,
        right: Annotated[int, PIXELS] = 0,
        bottom: Annotated[int, PIXELS] = 0,
    ) -> Mask:
        output = as_masks(mask).clone()
        width, height = output.shape[-1], output.shape[-2]
        left, right, top, bottom = min(left, width), min(right, width), min(top, height), min(bottom, height)
        for i in range(left):
            output[:, :, i] *= (i + 1) / left
        for i in range(right):
            output[:, :, -i] *= (i + 1) / right  # -0 is column 0: ComfyUI's quirk, kept for parity
        for i in range(top):
            output[:, i, :] *= (i + 1) / top
        for i in range(bottom):
            output[:, -i, :] *= (i + 1) / bottom
        return output


class GrowMask(Node):
    """Grow (positive) or shrink (negative) a mask by whole pixels, one 3×3 step at a time; tapered
    corners use a cross-shaped step, which rounds the corners."""

    category = "mask"

    def run(
        self,
        *,
        mask: Annotated[Mask, Input("The mask to grow or shrink.")],
        expand: Annotated[
            int,
            Input("Pixels to grow by; negative shrinks.", min=-MAX_RESOLUTION, max=MAX_RESOLUTION, step=1),
        ] = 0,
        tapered_corners: Annotated[bool, Input("Round the corners (cross-shaped steps).")] = True,
    ) -> Mask:
        output = as_masks(mask).unsqueeze(1).float()
        for _ in range(abs(expand)):
            output = _step(output, expand > 0, tapered_corners)
        return output.squeeze(1)


def _step(masks: Any, grow: bool, cross: bool) -> Any:
    """One grey dilation (grow) or erosion of [B, 1, H, W] with a 3×3 square or cross footprint;
    pixels beyond the border repeat the edge, which leaves max and min unchanged."""
    import torch
    import torch.nn.functional as F

    if not cross:
        return window_extreme(masks, 3, grow)
    padded = F.pad(masks, (1, 1, 1, 1), mode="replicate")
    h, w = masks.shape[-2], masks.shape[-1]
    shifts = [padded[..., 1 : h + 1, 1 : w + 1], padded[..., :h, 1 : w + 1], padded[..., 2:, 1 : w + 1]]
    shifts += [padded[..., 1 : h + 1, :w], padded[..., 1 : h + 1, 2:]]
    stacked = torch.stack(shifts)
    return stacked.amax(0) if grow else stacked.amin(0)


class ThresholdMask(Node):
    """1 where the mask is above the value, else 0."""

    category = "mask"

    def run(
        self,
        *,
        mask: Annotated[Mask, Input("The mask.")],
        value: Annotated[float, Input("The threshold.", min=0.0, max=1.0, step=0.01)] = 0.5,
    ) -> Mask:
        return (mask > value).float()


class ImageToMask(Node):
    """One channel of an image as a mask."""

    display_name = "Convert Image to Mask"
    category = "mask"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image.")],
        channel: Annotated[str, Input("The channel to take.", choices=CHANNELS)],
    ) -> Mask:
        index = CHANNELS.index(channel)
        if index >= image.shape[-1]:
            raise ValueError(
                f"ImageToMask: channel {channel!r} — the image has only {image.shape[-1]} channels"
            )
        return image[:, :, :, index]


class ImageColorToMask(Node):
    """1 where a pixel has exactly the given colour (0xRRGGBB, compared in 8-bit), else 0."""

    category = "mask"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image.")],
        color: Annotated[
            int, Input("The colour as 0xRRGGBB.", min=0, max=0xFFFFFF, step=1, extra={"display": "color"})
        ] = 0,
    ) -> Mask:
        import torch

        rgb = (torch.clamp(image, 0, 1.0) * 255.0).round().to(torch.int)
        packed = (rgb[..., 0] << 16) + (rgb[..., 1] << 8) + rgb[..., 2]
        return (packed == color).float()
