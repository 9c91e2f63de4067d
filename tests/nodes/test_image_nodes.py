"""Built-in image nodes run through the executor, with files checked on disk."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from PIL import Image as PILImage

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt


def run(executor: Executor, prompt: dict[str, Any], extra_data: dict[str, Any] | None = None) -> Any:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "p", checked.outputs, extra_data=extra_data)
    assert result.status == "success", result.error
    return result


def empty(width: int = 8, height: int = 8, color: int = 0, batch: int = 1) -> dict[str, Any]:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch, "color": color},
    }


def pixels(folders: Folders, image: dict[str, str]) -> np.ndarray:
    return np.asarray(PILImage.open(folders.by_type(image["type"]) / image["subfolder"] / image["filename"]))


def test_save_image_writes_counted_pngs_with_prompt_and_workflow(
    executor: Executor, loom_folders: Folders
) -> None:
    prompt = {
        "1": empty(4, 2, 0xFF8000, batch=2),
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "sub/shot_%width%"},
        },
    }
    workflow = {"nodes": [{"id": 1}], "links": []}
    result = run(executor, prompt, {"extra_pnginfo": {"workflow": workflow}})
    images = result.outputs["3"]["images"]
    assert images == [
        {"filename": "shot_4_00001_.png", "subfolder": "sub", "type": "output"},
        {"filename": "shot_4_00002_.png", "subfolder": "sub", "type": "output"},
    ]
    saved = PILImage.open(loom_folders.output / "sub" / "shot_4_00001_.png")
    assert saved.size == (4, 2)
    assert json.loads(saved.text["prompt"])["3"]["class_type"] == "SaveImage"
    assert json.loads(saved.text["workflow"]) == workflow
    # 1 - 128/255 scaled by 255 truncates to 126, as ComfyUI writes it
    assert pixels(loom_folders, images[0])[0, 0].tolist() == [0, 126, 255]

    prompt["1"]["inputs"]["color"] = 0  # a new run continues the counter
    assert run(executor, prompt).outputs["3"]["images"][0]["filename"] == "shot_4_00003_.png"


def test_preview_image_goes_to_temp(executor: Executor, loom_folders: Folders) -> None:
    result = run(
        executor, {"1": empty(), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}
    )
    image = result.outputs["2"]["images"][0]
    assert image["type"] == "temp" and (loom_folders.temp / image["filename"]).is_file()


def save(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "1": empty(16, 8, 0x204060),
        "2": node,
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }


def test_scale_blend_batch(executor: Executor, loom_folders: Folders) -> None:
    scaled = run(
        executor,
        save(
            {
                "class_type": "ImageScale",
                "inputs": {
                    "image": ["1", 0],
                    "upscale_method": "bilinear",
                    "width": 32,
                    "height": 0,
                    "crop": "disabled",
                },
            }
        ),
    )
    assert pixels(loom_folders, scaled.outputs["3"]["images"][0]).shape == (16, 32, 3)

    prompt = save(
        {
            "class_type": "ImageBlend",
            "inputs": {"image1": ["1", 0], "image2": ["4", 0], "blend_factor": 1.0, "blend_mode": "multiply"},
        }
    )
    prompt["4"] = empty(4, 4, 0x808080)
    blended = pixels(loom_folders, run(executor, prompt).outputs["3"]["images"][0])
    assert blended.shape == (8, 16, 3) and abs(int(blended[0, 0, 2]) - 0x60 // 2) <= 1

    prompt = save({"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["4", 0]}})
    prompt["4"] = empty(4, 4)
    assert len(run(executor, prompt).outputs["3"]["images"]) == 2


def test_load_image_gives_image_and_mask_from_alpha(executor: Executor, loom_folders: Folders) -> None:
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:, :3, 3] = 255  # left half opaque
    PILImage.fromarray(rgba, "RGBA").save(loom_folders.input / "cutout.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "cutout.png"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "loaded"}},
        "4": {"class_type": "MaskToImage", "inputs": {"mask": ["1", 1]}},
        "5": {"class_type": "SaveImage", "inputs": {"images": ["4", 0], "filename_prefix": "mask"}},
    }
    result = run(executor, prompt)
    assert pixels(loom_folders, result.outputs["3"]["images"][0])[0, 0].tolist() == [0, 255, 255]
    mask = pixels(loom_folders, result.outputs["5"]["images"][0])[..., 0]
    assert mask.tolist() == [[0, 0, 0, 255, 255, 255]] * 4  # 1 where transparent


def test_load_image_reruns_when_file_content_changes(executor: Executor, loom_folders: Folders) -> None:
    PILImage.new("RGB", (2, 2), "red").save(loom_folders.input / "a.png")
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    first = run(executor, prompt)
    assert run(executor, prompt).executed == []
    PILImage.new("RGB", (2, 2), "blue").save(loom_folders.input / "a.png")
    assert run(executor, prompt).executed == ["1", "2"] != first.executed[:0]


def test_load_image_unknown_file_is_a_validation_error(executor: Executor, loom_folders: Folders) -> None:
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": "../etc/passwd"}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }
    checked = validate_prompt(executor.registry, prompt)
    assert checked.node_errors["1"]["errors"][0]["type"] == "value_not_in_list"
