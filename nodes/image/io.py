"""Saving, previewing and loading images, with the workflow stored inside each PNG."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import string
import time
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from engine import folders
from engine.context import Context
from engine.folders import safe_join
from engine.native import Image, Input, Mask, Node, Output, Ui, WithUi

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def expand_prefix(prefix: str, width: int, height: int) -> str:
    """ComfyUI's filename_prefix placeholders: %width%, %height%, %date:yyyy-MM-dd%-style dates."""
    prefix = prefix.replace("%width%", str(width)).replace("%height%", str(height))

    def date(match: re.Match[str]) -> str:
        now = time.localtime()
        fields = {"yyyy": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "hh": "%H", "mm": "%M", "ss": "%S"}
        pattern = re.sub(
            "|".join(sorted(fields, key=len, reverse=True)), lambda m: fields[m.group(0)], match[1]
        )
        return time.strftime(pattern, now)

    return re.sub(r"%date:([^%]+)%", date, prefix)


class OutputSlot(NamedTuple):
    """Where a saver writes: the folder, the file name stem, its next counter, the UI's subfolder."""

    folder: Path
    name: str
    counter: int
    subfolder: str


def output_slot(root: Path, prefix: str, width: int = 0, height: int = 0) -> OutputSlot:
    """The folder and next counter for a `filename_prefix` (placeholders expanded) under `root`;
    a prefix that would leave the folder or is not a file name is an error naming the input."""
    from engine.folders import UnsafePathError

    try:
        relative = Path(expand_prefix(prefix, width, height))
        if not relative.name or "\x00" in prefix:
            raise UnsafePathError("not a file name")
        folder = safe_join(root, *relative.parent.parts) if relative.parent.parts else root.resolve()
        folder.mkdir(parents=True, exist_ok=True)
    except (UnsafePathError, OSError) as exc:
        raise ValueError(f"input 'filename_prefix' {prefix!r} cannot be used: {exc}") from exc
    counter = next_counter(folder, relative.name)
    return OutputSlot(folder, relative.name, counter, relative.parent.as_posix().strip("."))


def next_counter(folder: Path, name: str) -> int:
    """One more than the highest `<name>_<counter>_.png` already in the folder."""
    pattern = re.compile(re.escape(name) + r"_(\d+)_?\.")
    counters = [
        int(m[1])
        for p in folder.glob(f"{glob_escape(name)}_*")
        if (m := pattern.fullmatch(p.name[: -len(p.suffix)] + "."))
    ]
    return max(counters, default=0) + 1


def glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


def save_images(
    images: Any, root: Path, prefix: str, folder_type: str, ctx: Context, compress_level: int
) -> list[dict[str, str]]:
    """Write each image of a batch as PNG with the prompt and extra_pnginfo as text chunks."""
    import numpy as np
    from PIL import Image as PILImage
    from PIL.PngImagePlugin import PngInfo

    slot = output_slot(root, prefix, images.shape[2], images.shape[1])
    counter = slot.counter
    saved = []
    for image in images:
        array = np.clip(image.detach().float().cpu().numpy() * 255.0, 0, 255).astype(np.uint8)
        info = PngInfo()
        if ctx.prompt:
            info.add_text("prompt", json.dumps(ctx.prompt))
        for key, value in ctx.extra_pnginfo.items():
            info.add_text(key, json.dumps(value))
        filename = f"{slot.name}_{counter:05}_.png"
        _save_png(PILImage.fromarray(array), slot.folder / filename, info, compress_level)
        saved.append({"filename": filename, "subfolder": slot.subfolder, "type": folder_type})
        counter += 1
    return saved


# ComfyUI's output nodes declare the prompt and workflow as hidden inputs; Loom's read them from ctx.
SAVE_HIDDEN = {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"}


class SaveImage(Node):
    """Save images as PNG files in the output folder, with the workflow embedded in each file; the images
    are also passed on, as newer ComfyUI's SaveImage does."""

    display_name = "Save Image"
    category = "image"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        images: Annotated[Image, Input("The images to save.")],
        filename_prefix: Annotated[
            str, Input("File name prefix; may contain a subfolder, %width%, %height%, %date:yyyy-MM-dd%.")
        ] = "Loom",
    ) -> Annotated[Image, Output("images")]:
        # Newer ComfyUI passes the images on (its templates link SaveImage to ImageCompare).
        saved = save_images(images, ctx.folders.output, filename_prefix, "output", ctx, 4)
        return WithUi(images, Ui(images=saved))


class PreviewImage(Node):
    """Show images without keeping them: they go to the temp folder, emptied at start-up."""

    display_name = "Preview Image"
    category = "image"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(self, ctx: Context, images: Annotated[Image, Input("The images to show.")]) -> Ui:
        suffix = "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        return Ui(images=save_images(images, ctx.folders.temp, f"Loom_temp_{suffix}", "temp", ctx, 1))


def input_images() -> list[str]:
    """Image files in the input folder (subfolders included), as the LoadImage combo lists them."""
    root = folders.current().input
    if not root.is_dir():
        return []
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


class ImageAndMask(NamedTuple):
    IMAGE: Image
    MASK: Mask


def read_image(path: Path) -> ImageAndMask:
    """An image file's frames (those of the first frame's size) and masks from their alpha (1 where
    transparent; zeros without alpha)."""
    import numpy as np
    import torch
    from PIL import Image as PILImage
    from PIL import ImageOps, ImageSequence

    images: list[Any] = []
    masks: list[Any] = []
    with PILImage.open(path) as source:
        for frame in ImageSequence.Iterator(source):
            frame = ImageOps.exif_transpose(frame) or frame
            if frame.mode == "I":
                frame = frame.point(lambda value: value * (1 / 255))
            rgb = np.asarray(frame.convert("RGB"), dtype=np.float32) / 255.0
            if images and rgb.shape != images[0].shape:
                break
            images.append(rgb)
            if "A" in frame.getbands():
                alpha = np.asarray(frame.getchannel("A"), dtype=np.float32) / 255.0
                masks.append(1.0 - alpha)
            else:
                masks.append(np.zeros(rgb.shape[:2], dtype=np.float32))
    return ImageAndMask(torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(masks)))


class LoadImage(Node):
    """Load an image from the input folder; its alpha channel becomes the MASK (1 where transparent)."""

    display_name = "Load Image"
    category = "image"

    def run(
        self,
        image: Annotated[
            str, Input("A file in the input folder.", choices=input_images, extra={"image_upload": True})
        ],
    ) -> ImageAndMask:
        return read_image(safe_join(folders.current().input, image))

    @classmethod
    def fingerprint(cls, image: str) -> str:
        """The file's content hash, so replacing a file under the same name re-runs the node."""
        return hashlib.sha256(safe_join(folders.current().input, image).read_bytes()).hexdigest()


def _save_png(image: Any, path: Path, info: Any, compress_level: int) -> None:
    """Write beside the target and rename, so a full disk leaves no empty or truncated PNG behind."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        image.save(temporary, format="PNG", pnginfo=info, compress_level=compress_level)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
