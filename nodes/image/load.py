"""Loading a mask from an image file, and loading images back from the output folder."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Annotated

from engine import folders
from engine.folders import safe_join
from engine.native import Input, Mask, Node
from nodes.image.io import IMAGE_SUFFIXES, ImageAndMask, input_images, read_image

MASK_CHANNELS = ("alpha", "red", "green", "blue")
# ComfyUI's annotated file names: "name.png [output]" reads from the output folder.
ANNOTATION = re.compile(r"^(?P<name>.*?) \[(?P<folder>input|output|temp)\]$")


class LoadImageMask(Node):
    """Load one channel of an image in the input folder as a mask; alpha is inverted (1 where
    transparent). An image without the channel gives a 64×64 zero mask."""

    display_name = "Load Image (as Mask)"
    category = "mask"

    def run(
        self,
        *,
        image: Annotated[
            str, Input("A file in the input folder.", choices=input_images, extra={"image_upload": True})
        ],
        channel: Annotated[str, Input("The channel to read.", choices=MASK_CHANNELS)],
    ) -> Mask:
        import numpy as np
        import torch
        from PIL import Image as PILImage
        from PIL import ImageOps

        with PILImage.open(safe_join(folders.current().input, image)) as source:
            picture = ImageOps.exif_transpose(source) or source
            if picture.getbands() != ("R", "G", "B", "A"):
                if picture.mode == "I":
                    picture = picture.point(lambda value: value * (1 / 255))
                picture = picture.convert("RGBA")
            band = channel[0].upper()
            if band not in picture.getbands():
                return torch.zeros((1, 64, 64), dtype=torch.float32)
            mask = torch.from_numpy(np.array(picture.getchannel(band)).astype(np.float32) / 255.0)
        return (1.0 - mask if band == "A" else mask).unsqueeze(0)

    @classmethod
    def fingerprint(cls, image: str, channel: str) -> str:
        """The file's content hash: a file replaced under the same name is loaded again."""
        return hashlib.sha256(safe_join(folders.current().input, image).read_bytes()).hexdigest()


def resolve_annotated(name: str, default: str) -> Path:
    """The file an annotated name ("x.png [output]") points at; without annotation, in `default`."""
    match = ANNOTATION.match(name)
    folder, name = (match["folder"], match["name"]) if match else (default, name)
    return safe_join(folders.current().by_type(folder), name)


def output_images() -> list[str]:
    """Image files in the output folder, newest first, annotated as ComfyUI's front end sends them."""
    root = folders.current().output
    if not root.is_dir():
        return []
    files = [p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    return [f"{p.name} [output]" for p in sorted(files, key=lambda p: -p.stat().st_mtime)]


class LoadImageOutput(Node):
    """Load an image from the output folder, e.g. to keep working on a result."""

    display_name = "Load Image (from Outputs)"
    category = "image"
    experimental = True

    def run(
        self,
        *,
        image: Annotated[
            str,
            Input(
                "An image in the output folder ('name.png [output]').",
                choices=output_images,
                extra={
                    "image_upload": True,
                    "image_folder": "output",
                    "remote": {
                        "route": "/internal/files/output",
                        "refresh_button": True,
                        "control_after_refresh": "first",
                    },
                },
            ),
        ],
    ) -> ImageAndMask:
        return read_image(resolve_annotated(image, "output"))

    @classmethod
    def fingerprint(cls, image: str) -> str:
        """The file's content hash: a file replaced under the same name is loaded again."""
        return hashlib.sha256(resolve_annotated(image, "output").read_bytes()).hexdigest()


__all__ = ["LoadImageMask", "LoadImageOutput", "input_images", "output_images"]
