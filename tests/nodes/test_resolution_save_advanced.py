"""ResolutionSelector and SaveImageAdvanced (ComfyUI nodes newer than 0.3.64) through the executor, and
their widgets as the front end saves them, converted from a UI workflow."""

from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.nodes.harness import call


@pytest.mark.parametrize(
    ("aspect", "megapixels", "multiple", "minimum", "expected"),
    [
        ("1:1 (Square)", 1.0, 8, 256, (1024, 1024)),
        ("16:9 (Widescreen)", 1.0, 8, 256, (1368, 768)),
        ("9:16 (Portrait Widescreen)", 0.9, 8, 256, (728, 1296)),
        ("3:2 (Photo)", 2.0, 64, 256, (1792, 1152)),
        # 0.1 MP at 21:9 gives 496 × 208: below the minimum, so the smallest 21:9 size with sides ≥ 256
        # that are multiples of 8 (k = 32)
        ("21:9 (Ultrawide)", 0.1, 8, 256, (672, 288)),
    ],
)
def test_resolution_selector(
    executor: Executor, aspect: str, megapixels: float, multiple: int, minimum: int, expected: tuple[int, int]
) -> None:
    width, height = call(
        executor,
        "ResolutionSelector",
        aspect_ratio=aspect,
        megapixels=megapixels,
        multiple=multiple,
        minimum=minimum,
    )
    assert (width, height) == expected


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, at = [], 8
    while at < len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        (crc,) = struct.unpack(">I", data[at + 8 + length : at + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.append((kind, body))
        at += 12 + length
    return chunks


def _save_prompt(bit_depth: str, file_format: str = "png") -> dict[str, Any]:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 6, "height": 4, "batch_size": 2, "color": 0x3366CC},
        },
        "2": {
            "class_type": "SaveImageAdvanced",
            "inputs": {
                "images": ["1", 0],
                "filename_prefix": "adv/img_%batch_num%",
                "format": file_format,
                "format.bit_depth": bit_depth,
                "format.input_color_space": "sRGB",
            },
        },
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def _execute(executor: Executor, prompt: dict[str, Any]) -> Any:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    return executor.execute(
        checked.prompt, "p", checked.outputs, extra_data={"extra_pnginfo": {"workflow": {"n": 1}}}
    )


def test_save_image_advanced_png_16_bit(executor: Executor, loom_folders: Folders) -> None:
    result = _execute(executor, _save_prompt("16-bit"))
    assert result.status == "success", result.error
    saved = result.outputs["2"]["images"]
    assert [s["filename"] for s in saved] == ["img_0_00001.png", "img_1_00002.png"]
    assert {s["subfolder"] for s in saved} == {"adv"} and "3" in result.outputs  # the images went on
    data = (loom_folders.output / "adv" / "img_0_00001.png").read_bytes()
    chunks = dict(_png_chunks(data))
    width, height, bits, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (width, height, bits, colour) == (6, 4, 16, 2)
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(4, 1 + 6 * 6)
    assert (rows[:, 0] == 0).all()  # filter type none
    pixels = rows[:, 1:].copy().view(">u2").reshape(4, 6, 3)
    expected = np.round(np.array([0x33, 0x66, 0xCC]) / 255.0 * 65535)
    assert (pixels == expected).all()
    texts = dict(body.split(b"\0", 1) for kind, body in _png_chunks(data) if kind == b"tEXt")
    assert (
        json.loads(texts[b"workflow"]) == {"n": 1}
        and json.loads(texts[b"prompt"])["2"]["class_type"] == "SaveImageAdvanced"
    )
    assert Image.open(loom_folders.output / "adv" / "img_1_00002.png").size == (6, 4)  # readable elsewhere


def test_save_image_advanced_png_8_bit_matches_the_image(executor: Executor, loom_folders: Folders) -> None:
    image = torch.rand(1, 5, 7, 3)
    (passed,) = call(executor, "SaveImageAdvanced", images=image, filename_prefix="eight", format="png")
    assert torch.equal(passed, image)
    with Image.open(loom_folders.output / "eight_00001.png") as png:
        assert png.mode == "RGB"
        assert np.array_equal(np.asarray(png), np.round(image[0].numpy() * 255).astype(np.uint8))


@pytest.mark.parametrize(
    ("file_format", "bit_depth", "message"),
    [("exr", "32-bit float", "'exr' is not supported"), ("png", "32-bit float", "8-bit or 16-bit")],
)
def test_save_image_advanced_refuses_what_it_cannot_write(
    executor: Executor, loom_folders: Folders, file_format: str, bit_depth: str, message: str
) -> None:
    result = _execute(executor, _save_prompt(bit_depth, file_format))
    assert result.status == "error" and message in str(result.error)


def test_template_widgets_convert(registry: Any) -> None:
    """The widgets as ComfyUI's templates store them (image_z_image): the DynamicCombo's sub-widgets
    follow the format's value."""
    from engine.ui_workflow import ui_to_api

    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "ResolutionSelector",
                "inputs": [],
                "outputs": [],
                "widgets_values": ["16:9 (Widescreen)", 1, 8],
            },
            {"id": 2, "type": "EmptyImage", "inputs": [], "outputs": [], "widgets_values": [8, 8, 1, 0]},
            {
                "id": 3,
                "type": "SaveImageAdvanced",
                "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
                "outputs": [],
                "widgets_values": ["Z_image_base", "png", "16-bit", "sRGB"],
            },
        ],
        "links": [[1, 2, 0, 3, 0, "IMAGE"]],
    }
    prompt = ui_to_api(workflow, registry)
    assert prompt["1"]["inputs"] == {
        "aspect_ratio": "16:9 (Widescreen)",
        "megapixels": 1,
        "multiple": 8,
        "minimum": 256,
    }
    assert prompt["3"]["inputs"] == {
        "images": ["2", 0],
        "filename_prefix": "Z_image_base",
        "format": "png",
        "format.bit_depth": "16-bit",
        "format.input_color_space": "sRGB",
    }
    assert validate_prompt(registry, prompt).ok
