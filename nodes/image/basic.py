"""Image nodes that need no model. IMAGE is a float tensor [batch, height, width, channels] in 0..1."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Image, Input, Mask, Node

MAX_RESOLUTION = 16384
UPSCALE_METHODS = ("nearest-exact", "bilinear", "area", "bicubic", "lanczos")
CROP_METHODS = ("disabled", "center")
BLEND_MODES = ("normal", "multiply", "screen", "overlay", "soft_light", "difference")


def resize(image: Any, width: int, height: int, method: str = "bilinear", crop: str = "disabled") -> Any:
    """Resize an IMAGE batch [B, H, W, C]; `crop="center"` first cuts it to the target aspect ratio."""
    import torch

    return torch.clamp(upscale(image.movedim(-1, 1), width, height, method, crop), 0.0, 1.0).movedim(1, -1)


def upscale(samples: Any, width: int, height: int, method: str, crop: str = "disabled") -> Any:
    """Resize a [B, C, H, W] batch (images or latents) as ComfyUI's common_upscale does: torch's
    interpolation without antialiasing (so downscaling matches ComfyUI's pixels), after trimming
    equal margins to the target aspect ratio when `crop="center"`."""
    import torch.nn.functional as F

    if crop == "center":
        old_h, old_w = samples.shape[2], samples.shape[3]
        old_aspect, new_aspect = old_w / old_h, width / height
        trim_x = round((old_w - old_w * (new_aspect / old_aspect)) / 2) if old_aspect > new_aspect else 0
        trim_y = round((old_h - old_h * (old_aspect / new_aspect)) / 2) if old_aspect < new_aspect else 0
        samples = samples[:, :, trim_y : old_h - trim_y, trim_x : old_w - trim_x]
    if method == "lanczos":
        return _resize_lanczos(samples, width, height)
    if method == "bislerp":
        return bislerp(samples, width, height)
    return F.interpolate(samples, size=(height, width), mode=method)


def fill_aspect(old_w: int, old_h: int, width: int, height: int) -> tuple[int, int]:
    """(width, height) with a side given as 0 computed from the other, keeping the aspect ratio."""
    if width == 0:
        width = max(1, round(old_w * height / old_h))
    if height == 0:
        height = max(1, round(old_h * width / old_w))
    return width, height


def bislerp(samples: Any, width: int, height: int) -> Any:
    """Bilinear resampling that interpolates each pixel's channel vector by spherical interpolation
    (direction) and linear interpolation (length), which keeps latent statistics intact."""
    import torch

    def slerp(a: Any, b: Any, t: Any) -> Any:
        a_len, b_len = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
        a_dir, b_dir = a / a_len.clamp_min(1e-8), b / b_len.clamp_min(1e-8)
        dot = (a_dir * b_dir).sum(dim=1, keepdim=True).clamp(-1.0, 1.0)
        omega = torch.acos(dot)
        sin = torch.sin(omega)
        linear = sin.abs() < 1e-4
        w_a = torch.where(
            linear, 1 - t, torch.sin((1 - t) * omega) / sin.where(~linear, torch.ones_like(sin))
        )
        w_b = torch.where(linear, t, torch.sin(t * omega) / sin.where(~linear, torch.ones_like(sin)))
        return (w_a * a_dir + w_b * b_dir) * (a_len * (1 - t) + b_len * t)

    def axis(size_in: int, size_out: int) -> tuple[Any, Any, Any]:
        pos = ((torch.arange(size_out, dtype=torch.float32) + 0.5) * size_in / size_out - 0.5).clamp(
            0, size_in - 1
        )
        low = pos.floor().long()
        return low, (low + 1).clamp(max=size_in - 1), (pos - low).to(samples.device)

    y0, y1, ty = axis(samples.shape[2], height)
    x0, x1, tx = axis(samples.shape[3], width)
    rows = slerp(samples[:, :, y0], samples[:, :, y1], ty.reshape(1, 1, -1, 1))
    return slerp(rows[:, :, :, x0], rows[:, :, :, x1], tx.reshape(1, 1, 1, -1))


def _resize_lanczos(samples: Any, width: int, height: int) -> Any:
    import numpy as np
    import torch
    from PIL import Image as PILImage

    frames = []
    for frame in samples:
        array = (frame.movedim(0, -1).cpu().numpy() * 255).clip(0, 255).astype(np.uint8)
        resized = PILImage.fromarray(array).resize((width, height), PILImage.Resampling.LANCZOS)
        frames.append(torch.from_numpy(np.asarray(resized).astype(np.float32) / 255.0).movedim(-1, 0))
    return torch.stack(frames).to(samples.device)


class EmptyImage(Node):
    """A batch of images filled with one colour."""

    category = "image"

    def run(
        self,
        width: Annotated[int, Input("Width in pixels.", min=1, max=MAX_RESOLUTION, step=1)] = 512,
        height: Annotated[int, Input("Height in pixels.", min=1, max=MAX_RESOLUTION, step=1)] = 512,
        batch_size: Annotated[int, Input("Number of images.", min=1, max=4096)] = 1,
        color: Annotated[
            int, Input("Fill colour as 0xRRGGBB.", min=0, max=0xFFFFFF, step=1, extra={"display": "color"})
        ] = 0,
    ) -> Image:
        import torch

        rgb = [((color >> shift) & 0xFF) / 255.0 for shift in (16, 8, 0)]
        return torch.tensor(rgb, dtype=torch.float32).expand(batch_size, height, width, 3).clone()


class ImageInvert(Node):
    """Invert the colours of an image (1 - value)."""

    display_name = "Invert Image"
    category = "image"

    def run(self, image: Annotated[Image, Input("The image to invert.")]) -> Image:
        return 1.0 - image


class ImageScale(Node):
    """Resize an image. A width or height of 0 keeps the aspect ratio from the other side."""

    display_name = "Upscale Image"
    category = "image/upscaling"

    def run(
        self,
        image: Annotated[Image, Input("The image to resize.")],
        upscale_method: Annotated[str, Input("How pixels are resampled.", choices=UPSCALE_METHODS)] = (
            "nearest-exact"
        ),
        width: Annotated[
            int, Input("Target width; 0 keeps the aspect ratio.", min=0, max=MAX_RESOLUTION, step=1)
        ] = 512,
        height: Annotated[
            int, Input("Target height; 0 keeps the aspect ratio.", min=0, max=MAX_RESOLUTION, step=1)
        ] = 512,
        crop: Annotated[
            str, Input("Crop to the target aspect ratio first.", choices=CROP_METHODS)
        ] = "disabled",
    ) -> Image:
        old_h, old_w = image.shape[1], image.shape[2]
        if width == 0 and height == 0:
            return image
        return resize(image, *fill_aspect(old_w, old_h, width, height), upscale_method, crop)


class ImageBlend(Node):
    """Blend two images with a blend mode; the second is resized to the first if they differ."""

    display_name = "Image Blend"
    category = "image/postprocessing"

    def run(
        self,
        image1: Annotated[Image, Input("The base image.")],
        image2: Annotated[Image, Input("The image blended on top.")],
        blend_factor: Annotated[
            float, Input("0 keeps image1, 1 is fully blended.", min=0.0, max=1.0, step=0.01)
        ] = (0.5),
        blend_mode: Annotated[str, Input("How the two are combined.", choices=BLEND_MODES)] = "normal",
    ) -> Image:
        import torch

        if image1.shape[1:3] != image2.shape[1:3]:
            image2 = resize(image2, image1.shape[2], image1.shape[1], "bicubic", "center")
        blended = _blend(image1, image2.to(image1.device), blend_mode)
        return torch.clamp(image1 * (1 - blend_factor) + blended * blend_factor, 0.0, 1.0)


def _blend(a: Any, b: Any, mode: str) -> Any:
    import torch

    if mode == "multiply":
        return a * b
    if mode == "screen":
        return 1 - (1 - a) * (1 - b)
    if mode == "overlay":
        return torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b))
    if mode == "soft_light":
        g = torch.where(a <= 0.25, ((16 * a - 12) * a + 4) * a, torch.sqrt(a))
        return torch.where(b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (g - a))
    if mode == "difference":
        return a - b
    return b


class ImageBatch(Node):
    """Join two image batches into one; the second is resized to the first if their sizes differ."""

    display_name = "Batch Images"
    category = "image"

    def run(
        self,
        image1: Annotated[Image, Input("The first batch.")],
        image2: Annotated[Image, Input("The batch appended after it.")],
    ) -> Image:
        import torch

        if image1.shape[1:3] != image2.shape[1:3]:
            image2 = resize(image2, image1.shape[2], image1.shape[1], "bilinear", "center")
        return torch.cat((image1, image2.to(image1.device)), dim=0)


class MaskToImage(Node):
    """Show a mask as a grey-scale image (white where the mask is 1)."""

    display_name = "Convert Mask to Image"
    category = "mask"

    def run(self, mask: Annotated[Mask, Input("The mask to show.")]) -> Image:
        return mask.reshape(-1, mask.shape[-2], mask.shape[-1], 1).expand(-1, -1, -1, 3).clone()
