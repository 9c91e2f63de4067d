"""Smaller ComfyUI nodes the Flux, SD3.5, Qwen-Image and Chroma workflows use: ImageScaleToMaxDimension,
MaskPreview, FreSca and ControlNetApplySD3, through the executor."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.harness import call
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import image_of, run


@pytest.mark.parametrize(
    ("height", "width", "expected"), [(20, 40, (15, 30)), (40, 20, (30, 15)), (9, 9, (30, 30))]
)
def test_image_scale_to_max_dimension(
    executor: Executor, height: int, width: int, expected: tuple[int, int]
) -> None:
    image = torch.rand(2, height, width, 3)
    (out,) = call(
        executor, "ImageScaleToMaxDimension", image=image, upscale_method="bilinear", largest_size=30
    )
    assert tuple(out.shape) == (2, *expected, 3)


def test_mask_preview_writes_grey_images_to_temp(executor: Executor, loom_folders: Folders) -> None:
    mask = torch.zeros(2, 4, 6)
    mask[1, :, 3:] = 1.0
    (ui,) = call(executor, "MaskPreview", mask=mask)
    shown = ui["images"]
    assert [entry["type"] for entry in shown] == ["temp", "temp"]
    second = np.asarray(Image.open(loom_folders.temp / shown[1]["filename"]))
    assert second.shape == (4, 6, 3) and (second[:, 3:] == 255).all() and (second[:, :3] == 0).all()


def test_frequency_scaling_math() -> None:
    from nodes.model_patches.fresca import frequency_scaled

    x = torch.randn(1, 2, 8, 8)
    assert torch.allclose(frequency_scaled(x, 1.0, 1.0, 3), x, atol=1e-5)
    # every frequency counts as low when the cutoff covers the whole spectrum
    assert torch.allclose(frequency_scaled(x, 2.0, 0.0, 100), 2 * x, atol=1e-5)
    # only the zero frequency kept (cutoff 1 keeps the centre 2×2 of the shifted spectrum; scale the rest 0)
    smooth = torch.ones(1, 1, 8, 8) * 3.0
    assert torch.allclose(frequency_scaled(smooth, 1.0, 0.0, 1), smooth, atol=1e-5)


def test_fresca_changes_guided_sampling_only_when_it_scales(executor: Executor, sd_folders: Folders) -> None:
    base = text_to_image("tiny_sd1.safetensors", seed=4)
    plain = image_of(sd_folders, run(executor, base))
    patched = text_to_image("tiny_sd1.safetensors", seed=4)
    patched["20"] = {
        "class_type": "FreSca",
        "inputs": {"model": ["4", 0], "scale_low": 1.0, "scale_high": 1.0, "freq_cutoff": 20},
    }
    patched["3"]["inputs"]["model"] = ["20", 0]
    assert np.array_equal(image_of(sd_folders, run(executor, patched)), plain)
    patched["20"]["inputs"]["scale_high"] = 3.0
    patched["20"]["inputs"]["freq_cutoff"] = 1
    assert not np.array_equal(image_of(sd_folders, run(executor, patched)), plain)


def test_controlnet_apply_sd3_requires_the_vae_and_keeps_strength_zero(executor: Executor) -> None:
    spec = executor.registry.get("ControlNetApplySD3")
    assert spec is not None and [i.name for i in spec.inputs if i.section == "required"] == [
        "positive",
        "negative",
        "control_net",
        "vae",
        "image",
        "strength",
        "start_percent",
        "end_percent",
    ]
    cond = [[torch.zeros(1, 2, 4), {}]]
    positive, negative = call(
        executor,
        "ControlNetApplySD3",
        positive=cond,
        negative=cond,
        control_net=object(),
        vae=object(),
        image=torch.zeros(1, 8, 8, 3),
        strength=0.0,
        start_percent=0.0,
        end_percent=1.0,
    )
    assert positive is cond and negative is cond


def test_image_compare_shows_both_sides(executor: Executor, loom_folders: Folders) -> None:
    a, b = torch.zeros(1, 4, 4, 3), torch.ones(2, 4, 4, 3)
    (result,) = call(executor, "ImageCompare", image_a=a, image_b=b)
    shown = result
    assert len(shown["a_images"]) == 1 and len(shown["b_images"]) == 2
    assert {entry["type"] for entry in shown["a_images"] + shown["b_images"]} == {"temp"}
    last = np.asarray(Image.open(loom_folders.temp / shown["b_images"][1]["filename"]))
    assert (last == 255).all()
    (only_a,) = call(executor, "ImageCompare", image_a=a)
    assert only_a["b_images"] == []
