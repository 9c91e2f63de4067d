"""Conditioning nodes through the registry and executor: the options they set, hand-worked blends, and
prompts that sample with them on tiny random-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.diffusion.handles import load
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.nodes.harness import call
from tests.nodes.sd_fixtures import text_to_image


def cond(value: float, tokens: int = 2, **options: object) -> list:
    return [[torch.full((1, tokens, 3), value), {**options}]]


def test_average_blends_tokens_and_pooled(executor: Executor) -> None:
    to = cond(1.0, tokens=3, pooled_output=torch.full((1, 2), 1.0))
    source = cond(3.0, tokens=2, pooled_output=torch.full((1, 2), 3.0))
    (out,) = call(
        executor,
        "ConditioningAverage",
        conditioning_to=to,
        conditioning_from=source,
        conditioning_to_strength=0.25,
    )
    tensor, options = out[0]
    # tokens 0-1: 1·0.25 + 3·0.75 = 2.5; token 2: conditioning_from is padded with zeros: 0.25
    assert tensor[0, :, 0].tolist() == [2.5, 2.5, 0.25]
    assert options["pooled_output"].tolist() == [[2.5, 2.5]]


def test_concat_appends_tokens(executor: Executor) -> None:
    (out,) = call(
        executor,
        "ConditioningConcat",
        conditioning_to=cond(1.0, tokens=2, x=1) * 2,
        conditioning_from=cond(2.0, tokens=3),
    )
    assert len(out) == 2 and out[0][0].shape == (1, 5, 3) and out[0][0][0, :, 0].tolist() == [1, 1, 2, 2, 2]
    assert out[1][1] == {"x": 1}


def test_region_nodes_set_comfyui_options(executor: Executor) -> None:
    mask = torch.ones(4, 4)
    (masked,) = call(
        executor,
        "ConditioningSetMask",
        conditioning=cond(1.0),
        mask=mask,
        strength=0.7,
        set_cond_area="mask bounds",
    )
    options = masked[0][1]
    assert (
        options["mask"].shape == (1, 4, 4)
        and options["mask_strength"] == 0.7
        and options["set_area_to_bounds"]
    )
    (area,) = call(
        executor,
        "ConditioningSetAreaPercentage",
        conditioning=cond(1.0),
        width=0.5,
        height=0.25,
        x=0.1,
        y=0.2,
        strength=2.0,
    )
    assert area[0][1] == {
        "area": ("percentage", 0.25, 0.5, 0.2, 0.1),
        "strength": 2.0,
        "set_area_to_bounds": False,
    }
    (strong,) = call(
        executor, "ConditioningSetAreaStrength", conditioning=cond(1.0, area=(8, 8, 0, 0)), strength=3.0
    )
    assert strong[0][1] == {"area": (8, 8, 0, 0), "strength": 3.0}
    (timed,) = call(executor, "ConditioningSetTimestepRange", conditioning=cond(1.0), start=0.2, end=0.6)
    assert timed[0][1] == {"start_percent": 0.2, "end_percent": 0.6}


def test_sdxl_refiner_encode_sets_aesthetic_score_and_size(executor: Executor, tiny_models_dir: Path) -> None:
    clip = load(tiny_models_dir / "checkpoints" / "tiny_sdxl.safetensors").clip
    (out,) = call(
        executor, "CLIPTextEncodeSDXLRefiner", ascore=2.5, width=768, height=512, text="a cat", clip=clip
    )
    tensor, options = out[0]
    assert tensor.ndim == 3 and options["pooled_output"] is not None
    assert (options["aesthetic_score"], options["width"], options["height"]) == (2.5, 768, 512)


def test_inpaint_model_conditioning(executor: Executor, tiny_models_dir: Path) -> None:
    vae = load(tiny_models_dir / "checkpoints" / "tiny_sd1.safetensors").vae
    pixels = torch.rand(1, 68, 64, 3, generator=torch.Generator().manual_seed(1))
    mask = torch.zeros(1, 34, 32)
    mask[:, :17] = 1.0
    positive, negative, latent = call(
        executor,
        "InpaintModelConditioning",
        positive=cond(1.0),
        negative=cond(0.0),
        vae=vae,
        pixels=pixels,
        mask=mask,
        noise_mask=True,
    )
    concat, concat_mask = positive[0][1]["concat_latent_image"], positive[0][1]["concat_mask"]
    assert concat_mask.shape == (1, 1, 64, 64)  # resized to the pixels, cropped to multiples of 8
    assert torch.equal(latent["noise_mask"], concat_mask) and negative[0][1]["concat_latent_image"] is concat
    # ComfyUI encodes the cropped, masked pixels for the model and the whole image for the latent
    # (the tiny VAE halves sizes: 64×64 → 32×32, 68×64 → 34×32).
    assert concat.shape[-2:] == (32, 32) and latent["samples"].shape[-2:] == (34, 32)
    unmasked = vae.encode(pixels[:, 2:66])
    assert not torch.allclose(concat, unmasked)  # the masked half was greyed out before encoding
    (_, _, no_mask) = call(
        executor,
        "InpaintModelConditioning",
        positive=cond(1.0),
        negative=cond(0.0),
        vae=vae,
        pixels=pixels,
        mask=mask,
        noise_mask=False,
    )
    assert "noise_mask" not in no_mask


def test_instruct_pix2pix_conditioning(executor: Executor, tiny_models_dir: Path) -> None:
    vae = load(tiny_models_dir / "checkpoints" / "tiny_sd1.safetensors").vae
    positive, negative, latent = call(
        executor,
        "InstructPixToPixConditioning",
        positive=cond(1.0),
        negative=cond(0.0),
        vae=vae,
        pixels=torch.rand(1, 64, 64, 3),
    )
    image = positive[0][1]["concat_latent_image"]
    assert (
        torch.equal(latent["samples"], torch.zeros_like(image))
        and negative[0][1]["concat_latent_image"] is image
    )


@pytest.mark.parametrize("node", ["mask", "percentage", "timestep"])
def test_conditioning_options_sample_end_to_end(executor: Executor, sd_folders: Folders, node: str) -> None:
    prompt = text_to_image("tiny_sd1.safetensors")
    prompt["20"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 32, "height": 64}}
    nodes = {
        "mask": {
            "class_type": "ConditioningSetMask",
            "inputs": {
                "conditioning": ["6", 0],
                "mask": ["20", 0],
                "strength": 1.0,
                "set_cond_area": "mask bounds",
            },
        },
        "percentage": {
            "class_type": "ConditioningSetAreaPercentage",
            "inputs": {
                "conditioning": ["6", 0],
                "width": 0.5,
                "height": 1.0,
                "x": 0.5,
                "y": 0.0,
                "strength": 1.0,
            },
        },
        "timestep": {
            "class_type": "ConditioningSetTimestepRange",
            "inputs": {"conditioning": ["6", 0], "start": 0.0, "end": 0.5},
        },
    }
    prompt["21"] = nodes[node]
    prompt["22"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["21", 0], "conditioning_2": ["7", 0]},
    }
    prompt["3"]["inputs"]["positive"] = ["22", 0]
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, node, checked.outputs)
    assert result.status == "success", result.error
