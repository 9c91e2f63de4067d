"""Saving an image batch as one animated WEBP or PNG (APNG) file, with the workflow inside."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from engine.context import Context
from engine.native import Image, Input, Node, Ui
from nodes.image.io import SAVE_HIDDEN, output_slot

WEBP_METHODS = {"default": 4, "fastest": 0, "slowest": 6}
FPS = Input("Frames per second.", min=0.01, max=1000.0, step=0.01)
PREFIX = Input("File name prefix; may contain a subfolder, %width%, %height%, %date:yyyy-MM-dd%.")


def _frames(images: Any) -> list[Any]:
    import numpy as np
    from PIL import Image as PILImage

    return [
        PILImage.fromarray(np.clip(255.0 * image.detach().float().cpu().numpy(), 0, 255).astype(np.uint8))
        for image in images
    ]


def _target(root: Path, prefix: str, images: Any, suffix: str) -> tuple[Path, dict[str, str]]:
    """The next numbered file for this prefix and how the UI refers to it."""
    slot = output_slot(root, prefix, images.shape[2], images.shape[1])
    filename = f"{slot.name}_{slot.counter:05}_.{suffix}"
    return slot.folder / filename, {"filename": filename, "subfolder": slot.subfolder, "type": "output"}


class SaveAnimatedWEBP(Node):
    """Save the batch as one animated WEBP in the output folder; the prompt and workflow go into EXIF."""

    category = "image/animation"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        *,
        ctx: Context,
        images: Annotated[Image, Input("The frames.")],
        filename_prefix: Annotated[str, PREFIX] = "ComfyUI",
        fps: Annotated[float, FPS] = 6.0,
        lossless: Annotated[bool, Input("Lossless compression.")] = True,
        quality: Annotated[int, Input("Quality (lossy) or effort (lossless).", min=0, max=100)] = 80,
        method: Annotated[str, Input("Encoder speed against size.", choices=tuple(WEBP_METHODS))],
    ) -> Ui:
        frames = _frames(images)
        exif = frames[0].getexif()
        if ctx.prompt:
            exif[0x0110] = f"prompt:{json.dumps(ctx.prompt)}"
        for offset, (key, value) in enumerate(ctx.extra_pnginfo.items()):
            exif[0x010F - offset] = f"{key}:{json.dumps(value)}"
        path, entry = _target(ctx.folders.output, filename_prefix, images, "webp")
        frames[0].save(
            path,
            save_all=True,
            duration=int(1000.0 / fps),
            append_images=frames[1:],
            exif=exif,
            lossless=lossless,
            quality=quality,
            method=WEBP_METHODS[method],
        )
        return Ui(images=[entry], animated=[len(frames) != 1])


class SaveAnimatedPNG(Node):
    """Save the batch as one animated PNG in the output folder, the prompt and workflow in "comf" chunks."""

    category = "image/animation"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        *,
        ctx: Context,
        images: Annotated[Image, Input("The frames.")],
        filename_prefix: Annotated[str, PREFIX] = "ComfyUI",
        fps: Annotated[float, FPS] = 6.0,
        compress_level: Annotated[int, Input("zlib level: 0 fastest, 9 smallest.", min=0, max=9)] = 4,
    ) -> Ui:
        from PIL.PngImagePlugin import PngInfo

        frames = _frames(images)
        info = PngInfo()
        chunks = ({"prompt": ctx.prompt} if ctx.prompt else {}) | ctx.extra_pnginfo
        for key, value in chunks.items():
            data = key.encode("latin-1") + b"\0" + json.dumps(value).encode("latin-1")
            info.add(b"comf", data, after_idat=True)
        path, entry = _target(ctx.folders.output, filename_prefix, images, "png")
        frames[0].save(
            path,
            pnginfo=info,
            compress_level=compress_level,
            save_all=True,
            duration=int(1000.0 / fps),
            append_images=frames[1:],
        )
        return Ui(images=[entry], animated=[True])
