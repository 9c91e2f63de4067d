"""Image nodes that resize, crop, pad, paste, stitch, flip and rotate images (ComfyUI's semantics).

IMAGE is a float tensor [batch, height, width, channels] in 0..1.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, ClassVar, NamedTuple

from engine.native import Image, Input, Mask, Node
from nodes.image.basic import MAX_RESOLUTION, UPSCALE_METHODS, upscale
from nodes.image.tensors import composite

ROTATIONS = ("none", "90 degrees", "180 degrees", "270 degrees")
FLIPS = ("x-axis: vertically", "y-axis: horizontally")
DIRECTIONS = ("right", "down", "left", "up")
SPACING_COLORS = {
    "white": (1.0, 1.0, 1.0),
    "black": (0.0, 0.0, 0.0),
    "red": (1.0, 0.0, 0.0),
    "green": (0.0, 1.0, 0.0),
    "blue": (0.0, 0.0, 1.0),
}
METHOD = Input("How pixels are resampled.", choices=UPSCALE_METHODS)
PIXELS = Input("In pixels.", min=0, max=MAX_RESOLUTION, step=1)
SIZE = Input("In pixels.", min=1, max=MAX_RESOLUTION, step=1)
PAD = Input("Pixels added on this side.", min=0, max=MAX_RESOLUTION, step=8)


def _resized(image: Any, width: int, height: int, method: str) -> Any:
    return upscale(image.movedim(-1, 1), width, height, method).movedim(1, -1)


class ImageScaleBy(Node):
    """Resize an image by a factor."""

    display_name = "Upscale Image By"
    category = "image/upscaling"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to resize.")],
        upscale_method: Annotated[str, METHOD],
        scale_by: Annotated[float, Input("The factor.", min=0.01, max=8.0, step=0.01)] = 1.0,
    ) -> Image:
        height, width = image.shape[1], image.shape[2]
        return _resized(image, round(width * scale_by), round(height * scale_by), upscale_method)


class ImageScaleToTotalPixels(Node):
    """Resize an image to about this many megapixels (1 megapixel = 1024² pixels), keeping its shape."""

    category = "image/upscaling"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to resize.")],
        upscale_method: Annotated[str, METHOD],
        megapixels: Annotated[float, Input("Target size.", min=0.01, max=16.0, step=0.01)] = 1.0,
    ) -> Image:
        height, width = image.shape[1], image.shape[2]
        scale = math.sqrt(int(megapixels * 1024 * 1024) / (width * height))
        return _resized(image, round(width * scale), round(height * scale), upscale_method)


class ImageCrop(Node):
    """Cut a rectangle out of an image; the corner is kept inside the image."""

    display_name = "Image Crop"
    category = "image/transform"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to crop.")],
        width: Annotated[int, SIZE] = 512,
        height: Annotated[int, SIZE] = 512,
        x: Annotated[int, PIXELS] = 0,
        y: Annotated[int, PIXELS] = 0,
    ) -> Image:
        x, y = min(x, image.shape[2] - 1), min(y, image.shape[1] - 1)
        return image[:, y : y + height, x : x + width, :]


class ImageAndMask(NamedTuple):
    IMAGE: Image
    MASK: Mask


class ImagePadForOutpaint(Node):
    """Add grey borders for outpainting, and a mask that is 1 on them and fades into the image's inner
    `feathering` pixels along the padded sides (quadratically)."""

    display_name = "Pad Image for Outpainting"
    category = "image"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to extend.")],
        left: Annotated[int, PAD] = 0,
        top: Annotated[int, PAD] = 0,
        right: Annotated[int, PAD] = 0,
        bottom: Annotated[int, PAD] = 0,
        feathering: Annotated[
            int, Input("Fade width in pixels inside the image.", min=0, max=MAX_RESOLUTION, step=1)
        ] = 40,
    ) -> ImageAndMask:
        import torch

        batch, height, width, channels = image.shape
        padded = torch.full((batch, height + top + bottom, width + left + right, channels), 0.5)
        padded[:, top : top + height, left : left + width] = image
        mask = torch.ones((height + top + bottom, width + left + right))
        inner = torch.zeros((height, width))
        if feathering > 0 and feathering * 2 < height and feathering * 2 < width:
            rows, cols = torch.arange(height).unsqueeze(1), torch.arange(width).unsqueeze(0)
            distances = [
                rows if top else torch.full_like(rows, height),
                height - rows if bottom else torch.full_like(rows, height),
                cols if left else torch.full_like(cols, width),
                width - cols if right else torch.full_like(cols, width),
            ]
            nearest = torch.minimum(
                torch.minimum(distances[0], distances[1]), torch.minimum(distances[2], distances[3])
            )
            fade = (feathering - nearest) / feathering
            inner = torch.where(nearest < feathering, fade * fade, 0.0).float()
        mask[top : top + height, left : left + width] = inner
        return ImageAndMask(padded, mask.unsqueeze(0))


class ImageCompositeMasked(Node):
    """Paste `source` into `destination` at (x, y), blended by an optional mask (resized to the source).
    A source with an alpha channel the destination lacks loses it; an RGB source pasted into an RGBA
    destination is made opaque."""

    category = "image"

    def run(
        self,
        *,
        destination: Annotated[Image, Input("The image pasted into.")],
        source: Annotated[Image, Input("The image pasted.")],
        x: Annotated[int, PIXELS] = 0,
        y: Annotated[int, PIXELS] = 0,
        resize_source: Annotated[bool, Input("Resize the source to the destination first.")] = False,
        mask: Annotated[Mask | None, Input("Where to paste (1) and keep (0).")] = None,
    ) -> Image:
        import torch.nn.functional as F

        if destination.shape[-1] < source.shape[-1]:
            source = source[..., : destination.shape[-1]]
        elif destination.shape[-1] > source.shape[-1]:
            source = F.pad(source, (0, destination.shape[-1] - source.shape[-1]), value=1.0)
        target = destination.clone().movedim(-1, 1)
        return composite(target, source.movedim(-1, 1), x, y, mask, 1, resize_source).movedim(1, -1)


class ImageStitch(Node):
    """Put image2 beside image1 (right, down, left or up), optionally resized to match its height (width)
    and separated by a coloured gap. Without image2, image1 passes through."""

    display_name = "Image Stitch"
    category = "image/transform"

    def run(
        self,
        *,
        image1: Annotated[Image, Input("The first image.")],
        direction: Annotated[
            str, Input("Where image2 goes.", choices=DIRECTIONS, publish_default=True)
        ] = "right",
        match_image_size: Annotated[bool, Input("Resize image2 to image1's height (width).")] = True,
        spacing_width: Annotated[
            int, Input("Gap in pixels (rounded up to even).", min=0, max=1024, step=2)
        ] = 0,
        spacing_color: Annotated[
            str, Input("Colour of the gap.", choices=tuple(SPACING_COLORS), publish_default=True)
        ] = "white",
        image2: Annotated[Image | None, Input("The image to add.")] = None,
    ) -> Image:
        import torch

        if image2 is None:
            return image1
        image1, image2 = _same_batch(image1, image2)
        horizontal = direction in ("left", "right")
        if match_image_size:
            image2 = _match_side(image1, image2, horizontal)
        else:
            fill = 0.0 if spacing_color not in ("white", "black") else SPACING_COLORS[spacing_color][0]
            image1, image2 = _pad_across(image1, image2, horizontal, fill)
        image1, image2 = _same_channels(image1, image2)
        parts = [image2, image1] if direction in ("left", "up") else [image1, image2]
        if spacing_width > 0:
            parts.insert(
                1, _spacing(image1, image2, spacing_width + spacing_width % 2, horizontal, spacing_color)
            )
        return torch.cat(parts, dim=2 if horizontal else 1)


def _same_batch(image1: Any, image2: Any) -> tuple[Any, Any]:
    """Extend the smaller batch by repeating its last image."""
    import torch

    count = max(image1.shape[0], image2.shape[0])

    def extend(images: Any) -> Any:
        missing = count - images.shape[0]
        return torch.cat([images, images[-1:].repeat(missing, 1, 1, 1)]) if missing else images

    return extend(image1), extend(image2)


def _match_side(image1: Any, image2: Any, horizontal: bool) -> Any:
    """image2 resized (lanczos) to image1's height (beside) or width (above/below), keeping its aspect."""
    h1, w1 = image1.shape[1:3]
    h2, w2 = image2.shape[1:3]
    aspect = w2 / h2
    width, height = (int(h1 * aspect), h1) if horizontal else (w1, int(w1 / aspect))
    return upscale(image2.movedim(-1, 1), width, height, "lanczos").movedim(1, -1)


def _pad_across(image1: Any, image2: Any, horizontal: bool, fill: float) -> tuple[Any, Any]:
    """Centre the smaller image across the joining direction with a constant border."""
    import torch.nn.functional as F

    axis = 1 if horizontal else 2
    target = max(image1.shape[axis], image2.shape[axis])

    def pad(image: Any) -> Any:
        missing = target - image.shape[axis]
        if not missing:
            return image
        before, after = missing // 2, missing - missing // 2
        widths = (0, 0, 0, 0, before, after) if horizontal else (0, 0, before, after)
        return F.pad(image, widths, mode="constant", value=fill)

    return pad(image1), pad(image2)


def _same_channels(image1: Any, image2: Any) -> tuple[Any, Any]:
    """Give the image with fewer channels opaque extra ones (an alpha of 1)."""
    import torch

    channels = max(image1.shape[-1], image2.shape[-1])

    def extend(image: Any) -> Any:
        missing = channels - image.shape[-1]
        return torch.cat([image, torch.ones(*image.shape[:-1], missing)], dim=-1) if missing else image

    return extend(image1), extend(image2)


def _spacing(image1: Any, image2: Any, width: int, horizontal: bool, color: str) -> Any:
    import torch

    channels = image1.shape[-1]
    if horizontal:
        shape = (image1.shape[0], max(image1.shape[1], image2.shape[1]), width, channels)
    else:
        shape = (image1.shape[0], width, max(image1.shape[2], image2.shape[2]), channels)
    gap = torch.zeros(shape)
    for index, value in enumerate(SPACING_COLORS[color][:channels]):
        gap[..., index] = value
    if channels == 4:
        gap[..., 3] = 1.0
    return gap


class ImageSize(NamedTuple):
    width: int
    height: int
    batch_size: int


class GetImageSize(Node):
    """The width, height and batch size of an image."""

    display_name = "Get Image Size"
    category = "image"
    hidden: ClassVar[dict[str, str]] = {"unique_id": "UNIQUE_ID"}  # ComfyUI shows the size on the node

    def run(self, image: Annotated[Image, Input("The image.")]) -> ImageSize:
        return ImageSize(image.shape[2], image.shape[1], image.shape[0])


class ImageFlip(Node):
    """Mirror images: across the x axis (upside down) or the y axis (left to right)."""

    category = "image/transform"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to flip.")],
        flip_method: Annotated[str, Input("Which axis to mirror across.", choices=FLIPS)],
    ) -> Image:
        import torch

        return torch.flip(image, dims=[1 if flip_method.startswith("x") else 2])


class ImageRotate(Node):
    """Rotate images clockwise by quarter turns."""

    category = "image/transform"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to rotate.")],
        rotation: Annotated[str, Input("Clockwise rotation.", choices=ROTATIONS)],
    ) -> Image:
        import torch

        return torch.rot90(image, k=ROTATIONS.index(rotation), dims=[2, 1])
