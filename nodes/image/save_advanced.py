"""SaveImageAdvanced (ComfyUI's newer `comfy_extras.nodes_images`, not in 0.3.64): saving with a
chosen file format and bit depth; it also passes the images on.

ComfyUI declares `format` as a DynamicCombo: each format brings its own inputs, which prompts name
`format.bit_depth` and `format.input_color_space` and the front end stores after the format's value
(`["prefix", "png", "8-bit", "sRGB"]`). Loom writes PNG at 8 or 16 bits per channel; ComfyUI's other
formats (EXR, AVIF, written there through PyAV) are refused with a message, since Loom has no encoder
for them.
"""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path
from typing import Annotated, Any

from engine.context import Context
from engine.native import Image, Input, Node, Output, Ui, WithUi
from nodes.image.io import SAVE_HIDDEN, output_slot

FORMATS = ("png", "exr", "avif")
# Every format's choices, as one published list (Loom's node specs are fixed; see the module doc).
BIT_DEPTHS = ("8-bit", "16-bit", "32-bit float", "auto", "8-bit YUV420", "10-bit YUV420")
COLOR_SPACES = ("sRGB", "HDR", "linear", "HDR PQ")
PNG_BIT_DEPTHS = ("8-bit", "16-bit")
# ComfyUI marks these inputs advanced: the front end folds them away.
ADVANCED = {"advanced": True}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def encode_png(image: Any, bits: int, text: dict[str, str]) -> bytes:
    """One [H, W, C] image in 0..1 as PNG, 8 or 16 bits per channel (RGB, or RGBA with 4 channels), with
    the text as tEXt chunks. Written directly, since Pillow keeps 16-bit samples for grey images only."""
    import numpy as np

    array = np.clip(image.detach().float().cpu().numpy(), 0.0, 1.0)
    height, width, channels = array.shape
    if channels not in (3, 4):
        raise ValueError(f"SaveImageAdvanced: input 'images' must have 3 or 4 channels, got {channels}")
    top = (1 << bits) - 1
    samples = np.round(array * top).astype(">u2" if bits == 16 else np.uint8)
    rows = np.concatenate(
        [np.zeros((height, 1), np.uint8), samples.reshape(height, -1).view(np.uint8)], axis=1
    )
    header = struct.pack(">IIBBBBB", width, height, bits, 2 if channels == 3 else 6, 0, 0, 0)
    chunks = [_chunk(b"IHDR", header)]
    chunks += [
        _chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
        for key, value in text.items()
    ]
    chunks += [_chunk(b"IDAT", zlib.compress(rows.tobytes(), 4)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def _metadata(ctx: Context) -> dict[str, str]:
    """The prompt and the front end's extra info as ComfyUI writes them (JSON; non-Latin-1 escaped)."""
    text = {"prompt": json.dumps(ctx.prompt)} if ctx.prompt else {}
    text.update({key: json.dumps(value) for key, value in ctx.extra_pnginfo.items()})
    return text


def _write(path: Path, data: bytes) -> None:
    """Beside the target, then renamed: a failed write leaves no truncated file behind."""
    temporary = path.with_name(f".{path.name}.part")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class SaveImageAdvanced(Node):
    """Saves the input images to your ComfyUI output directory (PNG at 8 or 16 bits per channel)."""

    display_name = "Save Image (Advanced)"
    category = "image"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        images: Annotated[Image, Input("The images to save.")],
        filename_prefix: Annotated[
            str,
            Input(
                "File name prefix; may hold a subfolder, %width%, %height%, %date:yyyy-MM-dd%, %batch_num%."
            ),
        ] = "ComfyUI",
        file_format: Annotated[
            str, Input("The file format in which to save the image.", choices=FORMATS, name="format")
        ] = "png",
        bit_depth: Annotated[
            str | None,
            Input(
                "Bits per channel (png: 8-bit or 16-bit).",
                choices=BIT_DEPTHS,
                name="format.bit_depth",
                extra=ADVANCED,
            ),
        ] = None,
        color_space: Annotated[
            str | None,
            Input(
                "Colour space of the input images (png: sRGB).",
                choices=COLOR_SPACES,
                name="format.input_color_space",
                extra=ADVANCED,
            ),
        ] = None,
    ) -> Annotated[Image, Output("images")]:
        if file_format != "png":
            raise ValueError(
                f"SaveImageAdvanced: input 'format' {file_format!r} is not supported by Loom yet (it has no "
                f"{file_format.upper()} encoder); choose png"
            )
        bit_depth = bit_depth or "8-bit"
        if bit_depth not in PNG_BIT_DEPTHS or (color_space or "sRGB") != "sRGB":
            raise ValueError(
                f"SaveImageAdvanced: png takes 'format.bit_depth' {' or '.join(PNG_BIT_DEPTHS)} and "
                f"'format.input_color_space' sRGB, got {bit_depth!r} and {color_space!r}"
            )
        slot = output_slot(ctx.folders.output, filename_prefix, images.shape[2], images.shape[1])
        text = _metadata(ctx)
        saved = []
        for number, image in enumerate(images):
            filename = f"{slot.name.replace('%batch_num%', str(number))}_{slot.counter + number:05}.png"
            _write(slot.folder / filename, encode_png(image, 16 if bit_depth == "16-bit" else 8, text))
            saved.append({"filename": filename, "subfolder": slot.subfolder, "type": "output"})
        return WithUi(images, Ui(images=saved))  # type: ignore[return-value]
