"""Image post-processing nodes: blur, sharpen, colour quantisation and morphology (ComfyUI's semantics)."""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Image, Input, Node
from nodes.image.tensors import gaussian_kernel, window_extreme

DITHERS = ("none", "floyd-steinberg", "bayer-2", "bayer-4", "bayer-8", "bayer-16")
MORPHOLOGY = ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat")


def _filter(image: Any, kernel: Any, radius: int) -> Any:
    """Correlate each channel of IMAGE [B, H, W, C] with `kernel`, mirroring the image at its borders."""
    import torch.nn.functional as F

    channels = image.shape[-1]
    if radius >= min(image.shape[1], image.shape[2]):
        raise ValueError(
            f"radius {radius} needs an image more than {radius} pixels high and wide; "
            f"this one is {image.shape[1]}×{image.shape[2]}: lower the radius"
        )
    weights = kernel.to(image.dtype).repeat(channels, 1, 1).unsqueeze(1)
    padded = F.pad(image.movedim(-1, 1), (radius, radius, radius, radius), mode="reflect")
    return F.conv2d(padded, weights, groups=channels).movedim(1, -1)


class ImageBlur(Node):
    """Gaussian blur. `sigma` is relative to the radius (the kernel spans -1..1)."""

    category = "image/postprocessing"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to blur.")],
        blur_radius: Annotated[int, Input("Kernel radius in pixels.", min=1, max=31, step=1)] = 1,
        sigma: Annotated[float, Input("Spread of the Gaussian.", min=0.1, max=10.0, step=0.1)] = 1.0,
    ) -> Image:
        return _filter(image, gaussian_kernel(blur_radius * 2 + 1, sigma), blur_radius)


class ImageSharpen(Node):
    """Unsharp-style sharpening: the image minus alpha·10 times its Gaussian blur, renormalised; clamped."""

    category = "image/postprocessing"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image to sharpen.")],
        sharpen_radius: Annotated[int, Input("Kernel radius in pixels.", min=1, max=31, step=1)] = 1,
        sigma: Annotated[float, Input("Spread of the Gaussian.", min=0.1, max=10.0, step=0.01)] = 1.0,
        alpha: Annotated[float, Input("Strength.", min=0.0, max=5.0, step=0.01)] = 1.0,
    ) -> Image:
        import torch

        size = sharpen_radius * 2 + 1
        kernel = gaussian_kernel(size, sigma) * -(alpha * 10)
        center = size // 2
        kernel[center, center] = kernel[center, center] - kernel.sum() + 1.0
        return torch.clamp(_filter(image, kernel, sharpen_radius), 0, 1)


class ImageQuantize(Node):
    """Reduce each image to at most `colors` colours (Pillow's median cut), with optional dithering."""

    category = "image/postprocessing"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image.")],
        colors: Annotated[int, Input("Number of colours.", min=1, max=256, step=1)] = 256,
        dither: Annotated[str, Input("Dithering.", choices=DITHERS)],
    ) -> Image:
        import numpy as np
        import torch
        from PIL import Image as PILImage

        result = torch.zeros_like(image)
        for index, frame in enumerate(image):
            pil = PILImage.fromarray((frame[..., :3] * 255).to(torch.uint8).numpy(), mode="RGB")
            palette = pil.quantize(colors=colors)  # a palette image; quantising against it keeps Pillow exact
            if dither == "none":
                quantized = pil.quantize(palette=palette, dither=PILImage.Dither.NONE)
            elif dither == "floyd-steinberg":
                quantized = pil.quantize(palette=palette, dither=PILImage.Dither.FLOYDSTEINBERG)
            else:
                quantized = _bayer(pil, palette, int(dither.split("-")[-1]))
            result[index, ..., :3] = torch.from_numpy(np.array(quantized.convert("RGB"))).float() / 255
        return result


def _bayer_matrix(level: int) -> Any:
    """The normalised ordered-dither (Bayer) matrix of size 2**level, values centred on 0."""
    import numpy as np

    if level == 0:
        return np.zeros((1, 1), dtype=np.float32)
    scale = 4**level
    inner = scale * _bayer_matrix(level - 1)
    return np.block([[inner - 1.5, inner + 0.5], [inner + 1.5, inner - 0.5]]) / scale


def _bayer(pil: Any, palette: Any, order: int) -> Any:
    """Add a tiled Bayer threshold pattern scaled to the palette's colour spacing, then quantise."""
    import numpy as np
    import torch
    from PIL import Image as PILImage

    spread = 2 * 256 / (len(palette.getpalette()) // 3)
    matrix = torch.from_numpy(spread * _bayer_matrix(int(math.log2(order))) + 0.5)
    pixels = torch.from_numpy(np.array(pil).astype(np.float32))
    tiles = (math.ceil(pixels.shape[0] / matrix.shape[0]), math.ceil(pixels.shape[1] / matrix.shape[1]))
    pattern = matrix.tile(tiles).unsqueeze(-1)[: pixels.shape[0], : pixels.shape[1]]
    dithered = (pixels + pattern).clamp(0, 255).to(torch.uint8)
    return PILImage.fromarray(dithered.numpy()).quantize(palette=palette, dither=PILImage.Dither.NONE)


class Morphology(Node):
    """Grey-scale morphology with a square kernel; pixels outside the image are ignored."""

    display_name = "ImageMorphology"
    category = "image/postprocessing"

    def run(
        self,
        *,
        image: Annotated[Image, Input("The image.")],
        operation: Annotated[str, Input("The operation.", choices=MORPHOLOGY)],
        kernel_size: Annotated[int, Input("Kernel width in pixels.", min=3, max=999, step=1)] = 3,
    ) -> Image:
        images = image.movedim(-1, 1)

        def dilate(x: Any) -> Any:
            return window_extreme(x, kernel_size, True)

        def erode(x: Any) -> Any:
            return window_extreme(x, kernel_size, False)

        operations = {
            "erode": erode,
            "dilate": dilate,
            "open": lambda x: dilate(erode(x)),
            "close": lambda x: erode(dilate(x)),
            "gradient": lambda x: dilate(x) - erode(x),
            "top_hat": lambda x: x - dilate(erode(x)),
            "bottom_hat": lambda x: erode(dilate(x)) - x,
        }
        if operation not in operations:
            raise ValueError(f"Morphology: operation {operation!r} is not one of {', '.join(MORPHOLOGY)}")
        return operations[operation](images).movedim(1, -1)
