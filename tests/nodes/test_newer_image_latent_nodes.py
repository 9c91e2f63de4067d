"""ResizeImageMaskNode, LatentCut, LatentCutToBatch, EmptyQwenImageLayeredLatentImage and CameraAngle
(ComfyUI nodes newer than 0.3.64) through the executor, and ResizeImageMaskNode's DynamicCombo widgets
as the front end saves them, converted from a UI workflow."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.executor import Executor
from engine.graph import validate_prompt
from engine.ui_workflow import ui_to_api
from tests.nodes.harness import call


def _resize(executor: Executor, source: Any, rule: str, **sub: Any) -> Any:
    inputs = {f"resize_type.{name}": value for name, value in sub.items()}
    (out,) = call(
        executor, "ResizeImageMaskNode", input=source, resize_type=rule, scale_method="bilinear", **inputs
    )
    return out


@pytest.mark.parametrize(
    ("rule", "sub", "size"),
    [
        ("scale dimensions", {"width": 40, "height": 0}, (40, 20)),
        ("scale dimensions", {"width": 30, "height": 30, "crop": "disabled"}, (30, 30)),
        ("scale by multiplier", {"multiplier": 0.5}, (32, 16)),
        ("scale longer dimension", {"longer_size": 100}, (100, 50)),
        ("scale shorter dimension", {"shorter_size": 100}, (200, 100)),
        ("scale width", {"width": 16}, (16, 8)),
        ("scale height", {"height": 16}, (32, 16)),
        # 0.01 MP is int(10485.76) = 10485 pixels: sqrt(10485 / 2048) scales 64 × 32 to 144.8 × 72.4
        ("scale total pixels", {"megapixels": 0.01}, (145, 72)),
        ("scale to multiple", {"multiple": 24}, (48, 24)),
    ],
)
def test_resize_rules_give_comfyuis_sizes(
    executor: Executor, rule: str, sub: dict[str, Any], size: tuple
) -> None:
    image = torch.rand(2, 32, 64, 3)
    out = _resize(executor, image, rule, **sub)
    assert (out.shape[0], out.shape[2], out.shape[1], out.shape[3]) == (2, *size, 3)


def test_resize_masks_keep_their_layout_and_match_size_crops(executor: Executor) -> None:
    mask = torch.zeros(1, 32, 64)
    mask[:, :, 16:48] = 1.0
    reference = torch.zeros(1, 16, 16, 3)
    out = _resize(executor, mask, "match size", match=reference, crop="center")
    # centre crop to 1:1 keeps columns 16..48 (all ones), then halves the size
    assert out.shape == (1, 16, 16) and torch.allclose(out, torch.ones(1, 16, 16))
    stretched = _resize(executor, mask, "match size", match=reference, crop="disabled")
    assert stretched.shape == (1, 16, 16) and stretched.min() == 0.0


@pytest.mark.parametrize("method", ["nearest-exact", "bilinear", "area", "bicubic", "lanczos"])
def test_resize_masks_with_every_method(executor: Executor, method: str) -> None:
    mask = torch.zeros(2, 10, 20)
    mask[:, :, 10:] = 1.0
    (out,) = call(
        executor, "ResizeImageMaskNode", input=mask, resize_type="scale width", scale_method=method,
        **{"resize_type.width": 40},
    )  # fmt: skip
    assert out.shape == (2, 20, 40)
    assert out[:, :, :15].max() < 0.05 and out[:, :, 25:].min() > 0.95  # the edge stays in the middle


def test_resize_by_one_changes_nothing_and_match_needs_its_input(executor: Executor) -> None:
    image = torch.rand(1, 8, 8, 3)
    assert torch.equal(_resize(executor, image, "scale by multiplier", multiplier=1.0), image)
    with pytest.raises(Exception, match=r"resize_type\.match"):
        _resize(executor, image, "match size")


def _resize_workflow(values: list[Any]) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": 1, "type": "EmptyImage", "inputs": [], "outputs": [], "widgets_values": [64, 32, 1, 0]},
            {
                "id": 2,
                "type": "ResizeImageMaskNode",
                "inputs": [{"name": "input", "type": "IMAGE,MASK", "link": 1}],
                "outputs": [{"name": "resized", "type": "IMAGE", "links": [2]}],
                "widgets_values": values,
            },
            {"id": 3, "type": "PreviewImage", "inputs": [{"name": "images", "type": "IMAGE", "link": 2}]},
        ],
        "links": [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"]],
    }


@pytest.mark.parametrize(
    ("values", "want"),
    [
        # as image_qwen_Image_2512_controlnet stores it: the option's widget right after the combo
        (["scale total pixels", 1.6, "area"], {"resize_type.megapixels": 1.6, "scale_method": "area"}),
        (
            ["scale dimensions", 512, 0, "disabled", "lanczos"],
            {
                "resize_type.width": 512,
                "resize_type.height": 0,
                "resize_type.crop": "disabled",
                "scale_method": "lanczos",
            },
        ),
        (["scale height", 300, "bicubic"], {"resize_type.height": 300, "scale_method": "bicubic"}),
        (["match size", "center", "area"], {"resize_type.crop": "center", "scale_method": "area"}),
    ],
)
def test_dynamic_combo_widgets_follow_the_chosen_option(registry: Any, values: list[Any], want: dict) -> None:
    prompt = ui_to_api(_resize_workflow(values), registry)
    assert prompt["2"]["inputs"] == {"input": ["1", 0], "resize_type": values[0], **want}
    if values[0] != "match size":  # match size also needs its `match` link
        assert validate_prompt(registry, prompt).ok


def test_dynamic_combo_saved_by_name_keeps_only_the_chosen_options_widgets(registry: Any) -> None:
    workflow = _resize_workflow([])
    workflow["nodes"][1]["widgets_values"] = {
        "resize_type": "scale by multiplier",
        "resize_type.multiplier": 2.0,
    }
    inputs = ui_to_api(workflow, registry)["2"]["inputs"]
    assert inputs == {
        "input": ["1", 0],
        "resize_type": "scale by multiplier",
        "resize_type.multiplier": 2.0,
        "scale_method": "area",
    }


def test_latent_cut_along_each_axis(executor: Executor) -> None:
    samples = torch.arange(2 * 16 * 4 * 6 * 8, dtype=torch.float32).reshape(2, 16, 4, 6, 8)
    (out,) = call(executor, "LatentCut", samples={"samples": samples}, dim="t", index=1, amount=16384)
    assert torch.equal(out["samples"], samples[:, :, 1:])
    (out,) = call(executor, "LatentCut", samples={"samples": samples}, dim="x", index=-3, amount=2)
    assert torch.equal(out["samples"], samples[..., 5:7])
    flat = samples[:, :, 0]
    (out,) = call(executor, "LatentCut", samples={"samples": flat}, dim="y", index=10, amount=3)
    assert torch.equal(out["samples"], flat[:, :, 5:6])  # the index is clamped to the last row


def test_latent_cut_to_batch_puts_frames_in_the_batch(executor: Executor) -> None:
    samples = torch.randn(2, 16, 3, 4, 4)
    (out,) = call(executor, "LatentCutToBatch", samples={"samples": samples}, dim="t", slice_size=1)
    # per sample, its frames in order: (sample 0: frames 0, 1, 2), (sample 1: ...)
    want = torch.stack([samples[b, :, t : t + 1] for b in range(2) for t in range(3)])
    assert out["samples"].shape == (6, 16, 1, 4, 4) and torch.equal(out["samples"], want)
    (out,) = call(executor, "LatentCutToBatch", samples={"samples": samples}, dim="x", slice_size=3)
    assert out["samples"].shape == (2, 16, 3, 4, 3)  # the fourth column does not fill a slice
    four_d = torch.randn(1, 4, 8, 8)
    (out,) = call(executor, "LatentCutToBatch", samples={"samples": four_d}, dim="t", slice_size=1)
    assert torch.equal(out["samples"], four_d)  # "t" of a 4-D latent is its channels: left alone


def test_empty_qwen_image_layered_latent(executor: Executor) -> None:
    (out,) = call(executor, "EmptyQwenImageLayeredLatentImage", width=640, height=320, layers=2, batch_size=3)
    assert out["samples"].shape == (3, 16, 3, 40, 80) and not out["samples"].any()


@pytest.mark.parametrize(
    ("angles", "prompt"),
    [
        ((333, 17, 5.0), "front-left quarter view elevated shot medium shot"),  # the multi-angle template's
        ((0, 0, 0.0), "front view eye-level shot wide shot"),
        ((180, -20, 9.5), "back view low-angle shot close-up"),
        ((90, 60, 6.0), "right side view high-angle shot close-up"),
    ],
)
def test_camera_angle_describes_the_shot(executor: Executor, angles: tuple, prompt: str) -> None:
    horizontal, vertical, zoom = angles
    info, text = call(
        executor,
        "CameraAngle",
        horizontal_angle=horizontal,
        vertical_angle=vertical,
        zoom=zoom,
        view="camera",
    )
    assert text == prompt
    position, target = info["position"], info["target"]
    distance = sum((position[k] - target[k]) ** 2 for k in "xyz") ** 0.5
    assert distance == pytest.approx(6.0 - 2.8 * zoom / 10)
    assert info["cameraType"] == "perspective" and info["fov"] == 35.0


def test_sampling_a_layered_latent_stops_with_a_message(
    executor: Executor, loom_folders: Any, tmp_path: Any
) -> None:
    """Qwen-Image Layered's 5-D latent before Loom's Qwen-Image model: the KSampler refuses it by name
    rather than failing inside the guidance."""
    from engine.folders import Folders
    from tests.nodes.flow_fixtures_new import qwen_image_workflow, write_qwen_image_files
    from tests.nodes.test_sd_nodes import run

    write_qwen_image_files(tmp_path / "models")
    loom_folders.models = Folders.under(tmp_path, models_base=tmp_path / "models").models
    prompt = qwen_image_workflow()
    prompt["58"] = {
        "class_type": "EmptyQwenImageLayeredLatentImage",
        "inputs": {"width": 64, "height": 64, "layers": 2, "batch_size": 1},
    }
    result = run(executor, prompt)
    assert result.status == "error"
    assert result.error["node_type"] == "KSampler"
    message = result.error["exception_message"]
    assert "5 dimensions [1, 16, 3, 8, 8]" in message and "Qwen-Image Layered" in message
