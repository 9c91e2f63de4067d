"""Animated saves, mask loading, loading from the output folder and PreviewAny, checked on disk."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.harness import call


def frames(count: int = 3) -> torch.Tensor:
    return torch.linspace(0, 1, count).reshape(count, 1, 1, 1).expand(count, 4, 6, 3).contiguous()


def test_save_animated_png_has_frames_and_workflow(executor: Executor, loom_folders: Folders) -> None:
    (shown,) = call(
        executor, "SaveAnimatedPNG", images=frames(), filename_prefix="anim/a", fps=4.0, compress_level=1
    )
    assert shown["images"] == [{"filename": "a_00001_.png", "subfolder": "anim", "type": "output"}]
    assert shown["animated"] == [True]
    path = loom_folders.output / "anim" / "a_00001_.png"
    with PILImage.open(path) as png:
        assert png.n_frames == 3 and png.info["duration"] == 250
        png.seek(2)
        assert np.asarray(png.convert("RGB"))[0, 0].tolist() == [255, 255, 255]
    data = path.read_bytes()
    assert b"comf" in data and b'prompt\x00{"' in data  # the prompt travels in a "comf" chunk


def test_save_animated_webp(executor: Executor, loom_folders: Folders) -> None:
    (shown,) = call(
        executor,
        "SaveAnimatedWEBP",
        images=frames(2),
        filename_prefix="w",
        fps=10.0,
        lossless=True,
        quality=80,
        method="fastest",
    )
    assert shown["images"][0]["filename"] == "w_00001_.webp" and shown["animated"] == [True]
    with PILImage.open(loom_folders.output / "w_00001_.webp") as webp:
        assert webp.n_frames == 2
        assert (
            json.loads(webp.getexif()[0x0110].removeprefix("prompt:"))["node"]["class_type"]
            == "SaveAnimatedWEBP"
        )
    (single,) = call(
        executor,
        "SaveAnimatedWEBP",
        images=frames(1),
        filename_prefix="w",
        fps=10.0,
        lossless=False,
        quality=50,
        method="default",
    )
    assert single["images"][0]["filename"] == "w_00002_.webp" and single["animated"] == [False]


def test_load_image_mask_channels(executor: Executor, loom_folders: Folders) -> None:
    rgba = np.zeros((2, 3, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[0, :, 3] = 255  # top row opaque
    PILImage.fromarray(rgba, "RGBA").save(loom_folders.input / "m.png")
    (alpha,) = call(executor, "LoadImageMask", image="m.png", channel="alpha")
    assert alpha.tolist() == [[[0.0] * 3, [1.0] * 3]]  # 1 where transparent
    (red,) = call(executor, "LoadImageMask", image="m.png", channel="red")
    assert red.tolist() == [[[1.0] * 3] * 2]
    PILImage.new("L", (5, 5), 128).save(loom_folders.input / "grey.png")
    (green,) = call(executor, "LoadImageMask", image="grey.png", channel="green")
    assert green.shape == (1, 5, 5) and green[0, 0, 0].item() == pytest.approx(128 / 255)


def test_load_image_output_reads_the_output_folder(executor: Executor, loom_folders: Folders) -> None:
    PILImage.new("RGB", (3, 2), (0, 255, 0)).save(loom_folders.output / "result.png")
    image, mask = call(executor, "LoadImageOutput", image="result.png [output]")
    assert image.shape == (1, 2, 3, 3) and image[0, 0, 0].tolist() == [0.0, 1.0, 0.0]
    assert mask.shape == (1, 2, 3) and mask.sum().item() == 0


def test_preview_any_passes_its_text_on(executor: Executor) -> None:
    """The text it shows is also its STRING output (newer ComfyUI)."""
    assert call(executor, "PreviewAny", source="hello") == ("hello",)
    assert call(executor, "PreviewAny", source=1.5) == ("1.5",)
    assert call(executor, "PreviewAny", source={"a": [1, 2]}) == ('{"a": [1, 2]}',)
    assert call(executor, "PreviewAny", source=torch.zeros(1)) == ("tensor([0.])",)


@pytest.mark.parametrize("node", ["SaveImage", "SaveAnimatedWEBP", "SaveLatent"])
@pytest.mark.parametrize("prefix", ["../outside", "/etc/passwd", "bad\x00name", ""])
def test_a_prefix_that_is_not_a_file_in_the_output_folder_names_the_input(
    executor: Executor, loom_folders: Folders, node: str, prefix: str
) -> None:
    inputs: dict[str, Any] = {"filename_prefix": prefix}
    if node == "SaveLatent":
        inputs["samples"] = {"samples": torch.zeros(1, 4, 8, 8)}
    else:
        inputs["images"] = frames()
    if node == "SaveAnimatedWEBP":
        inputs |= {"fps": 4.0, "lossless": False, "quality": 80, "method": "default"}
    with pytest.raises(Exception, match=r"input 'filename_prefix'.*cannot be used"):
        call(executor, node, **inputs)
    assert not any(loom_folders.output.parent.glob("outside*"))
