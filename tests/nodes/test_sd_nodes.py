"""Stable Diffusion nodes end to end on tiny checkpoints in the real SD1.x, SD2.x and SDXL layouts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.conftest import Recorder
from tests.nodes.sd_fixtures import FAMILIES, text_to_image


def run(executor: Executor, prompt: dict[str, Any], listener: Any = None) -> Any:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    return executor.execute(checked.prompt, "p", checked.outputs, listener=listener)


def image_of(folders: Folders, result: Any, node: str = "9") -> np.ndarray:
    assert result.status == "success", result.error
    info = result.outputs[node]["images"][0]
    return np.asarray(Image.open(folders.output / info["subfolder"] / info["filename"]))


@pytest.mark.parametrize("family", FAMILIES)
def test_text_to_image_runs_for_each_family(executor: Executor, sd_folders: Folders, family: str) -> None:
    recorder = Recorder()
    pixels = image_of(sd_folders, run(executor, text_to_image(f"tiny_{family}.safetensors"), recorder))
    assert pixels.ndim == 3 and pixels.shape[2] == 3 and pixels.std() > 0
    progress = [d for d in recorder.of("progress") if d["node"] == "3"]
    assert [p["value"] for p in progress] == [1, 2, 3] and progress[0]["max"] == 3
    previews = recorder.of("preview_image")
    assert previews and previews[0]["format"] == "JPEG" and previews[0]["image"][:2] == b"\xff\xd8"


def test_same_seed_same_pixels_other_seed_differs(executor: Executor, sd_folders: Folders) -> None:
    first = image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", seed=5)))
    executor.cache.clear()
    again = image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", seed=5)))
    other = image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", seed=6)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_seed_change_reruns_only_sampler_and_after(executor: Executor, sd_folders: Folders) -> None:
    run(executor, text_to_image("tiny_sd1.safetensors", seed=1))
    recorder = Recorder()
    result = run(executor, text_to_image("tiny_sd1.safetensors", seed=2), recorder)
    assert set(recorder.of("execution_cached")[0]["nodes"]) == {"4", "5", "6", "7"}
    assert result.executed == ["3", "8", "9"]


@pytest.mark.parametrize(
    "sampler", ["euler", "euler_ancestral", "dpmpp_2m", "dpmpp_sde", "ddim", "lcm", "uni_pc"]
)
@pytest.mark.parametrize("scheduler", ["normal", "karras", "simple", "sgm_uniform"])
def test_samplers_and_schedulers_through_ksampler(
    executor: Executor, sd_folders: Folders, sampler: str, scheduler: str
) -> None:
    pixels = image_of(
        sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", sampler=sampler, scheduler=scheduler))
    )
    assert np.isfinite(pixels).all()


def img2img(denoise: float) -> dict[str, Any]:
    prompt = text_to_image("tiny_sd1.safetensors")
    prompt["10"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 32, "height": 32, "batch_size": 1, "color": 0x3366CC},
    }
    prompt["11"] = {"class_type": "VAEEncode", "inputs": {"pixels": ["10", 0], "vae": ["4", 2]}}
    prompt["3"]["inputs"].update(latent_image=["11", 0], denoise=denoise)
    prompt["12"] = {"class_type": "VAEDecode", "inputs": {"samples": ["11", 0], "vae": ["4", 2]}}
    prompt["13"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "direct", "images": ["12", 0]}}
    return prompt


def test_img2img_with_denoise_zero_returns_input_latent(executor: Executor, sd_folders: Folders) -> None:
    result = run(executor, img2img(0.0))
    assert np.array_equal(image_of(sd_folders, result, "9"), image_of(sd_folders, result, "13"))
    changed = run(executor, img2img(0.5))
    assert not np.array_equal(image_of(sd_folders, changed, "9"), image_of(sd_folders, changed, "13"))


def test_prompt_weights_and_long_prompts_change_the_conditioning(
    executor: Executor, sd_folders: Folders
) -> None:
    plain = image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", text="a red circle")))
    same = image_of(
        sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", text="a (red:1.0) circle"))
    )
    weighted = image_of(
        sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", text="a (red:1.8) circle"))
    )
    assert np.array_equal(plain, same) and not np.array_equal(plain, weighted)
    long_prompt = ", ".join(["a small red circle on the left"] * 20)
    assert (
        image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors", text=long_prompt))).std() > 0
    )


def test_conditioning_nodes(executor: Executor, sd_folders: Folders) -> None:
    prompt = text_to_image("tiny_sd1.safetensors")
    prompt["20"] = {
        "class_type": "ConditioningSetArea",
        "inputs": {"conditioning": ["6", 0], "width": 64, "height": 64, "x": 0, "y": 0, "strength": 1.0},
    }
    prompt["21"] = {
        "class_type": "ConditioningCombine",
        "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["20", 0]},
    }
    prompt["22"] = {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["7", 0]}}
    prompt["23"] = {"class_type": "CLIPSetLastLayer", "inputs": {"clip": ["4", 1], "stop_at_clip_layer": -2}}
    prompt["6"]["inputs"]["clip"] = ["23", 0]
    prompt["3"]["inputs"].update(positive=["21", 0], negative=["22", 0])
    assert image_of(sd_folders, run(executor, prompt)).std() > 0


def test_sdxl_text_encode_and_advanced_sampler_chain(executor: Executor, sd_folders: Folders) -> None:
    prompt = text_to_image("tiny_sdxl.safetensors")
    prompt["6"] = {
        "class_type": "CLIPTextEncodeSDXL",
        "inputs": {
            "clip": ["4", 1],
            "width": 1024,
            "height": 1024,
            "crop_w": 0,
            "crop_h": 0,
            "target_width": 1024,
            "target_height": 1024,
            "text_g": "a cat",
            "text_l": "a cat, photo",
        },
    }
    common = {
        "model": ["4", 0],
        "noise_seed": 3,
        "steps": 4,
        "cfg": 5.0,
        "sampler_name": "euler",
        "scheduler": "normal",
        "positive": ["6", 0],
        "negative": ["7", 0],
    }
    prompt["3"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            **common,
            "add_noise": "enable",
            "latent_image": ["5", 0],
            "start_at_step": 0,
            "end_at_step": 2,
            "return_with_leftover_noise": "enable",
        },
    }
    prompt["30"] = {
        "class_type": "KSamplerAdvanced",
        "inputs": {
            **common,
            "add_noise": "disable",
            "latent_image": ["3", 0],
            "start_at_step": 2,
            "end_at_step": 10000,
            "return_with_leftover_noise": "disable",
        },
    }
    prompt["8"]["inputs"]["samples"] = ["30", 0]
    assert image_of(sd_folders, run(executor, prompt)).std() > 0


def test_latent_nodes_and_inpainting(executor: Executor, sd_folders: Folders) -> None:
    prompt = img2img(1.0)
    prompt["40"] = {
        "class_type": "LatentUpscaleBy",
        "inputs": {"samples": ["11", 0], "upscale_method": "bislerp", "scale_by": 1.5},
    }
    prompt["41"] = {
        "class_type": "LatentUpscale",
        "inputs": {
            "samples": ["40", 0],
            "upscale_method": "bilinear",
            "width": 64,
            "height": 0,
            "crop": "disabled",
        },
    }
    prompt["42"] = {"class_type": "LoadImage", "inputs": {"image": "mask.png"}}
    prompt["43"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["41", 0], "mask": ["42", 1]}}
    prompt["3"]["inputs"]["latent_image"] = ["43", 0]
    prompt["44"] = {
        "class_type": "VAEEncodeForInpaint",
        "inputs": {"pixels": ["10", 0], "vae": ["4", 2], "mask": ["42", 1], "grow_mask_by": 6},
    }
    prompt["45"] = {
        "class_type": "VAEDecodeTiled",
        "inputs": {
            "samples": ["44", 0],
            "vae": ["4", 2],
            "tile_size": 64,
            "overlap": 32,
            "temporal_size": 64,
            "temporal_overlap": 8,
        },
    }
    prompt["46"] = {"class_type": "PreviewImage", "inputs": {"images": ["45", 0]}}
    alpha = np.zeros((32, 32, 4), dtype=np.uint8)
    alpha[:, :16, 3] = 255
    Image.fromarray(alpha, "RGBA").save(sd_folders.input / "mask.png")
    result = run(executor, prompt)
    # LatentUpscale to width 64 makes an 8×8 latent; the tiny VAE upsamples by 2 (real ones by 8).
    assert image_of(sd_folders, result).shape[:2] == (16, 16)
    assert result.outputs["46"]["images"]


def test_lora_changes_output_and_strength_zero_does_not(executor: Executor, sd_folders: Folders) -> None:
    import torch
    from safetensors.torch import save_file

    from engine.diffusion.handles import load

    unet = load(sd_folders.model_path("checkpoints", "tiny_sd1.safetensors")).model.unet
    target = "down_blocks.0.attentions.0.proj_in"
    width = unet.get_submodule(target).weight.shape[0]
    generator = torch.Generator().manual_seed(0)
    lora = {
        f"lora_unet_{target.replace('.', '_')}.lora_down.weight": torch.randn(
            2, width, 1, 1, generator=generator
        ),
        f"lora_unet_{target.replace('.', '_')}.lora_up.weight": torch.randn(
            width, 2, 1, 1, generator=generator
        ),
        f"lora_unet_{target.replace('.', '_')}.alpha": torch.tensor(2.0),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": torch.randn(
            2, 64, generator=generator
        ),
        "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": torch.randn(
            64, 2, generator=generator
        ),
    }
    sd_folders.models["loras"] = [sd_folders.output.parent / "loras"]
    sd_folders.models["loras"][0].mkdir()
    save_file(lora, str(sd_folders.models["loras"][0] / "test_lora.safetensors"))

    def with_lora(strength: float) -> np.ndarray:
        prompt = text_to_image("tiny_sd1.safetensors")
        prompt["10"] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["4", 0],
                "clip": ["4", 1],
                "lora_name": "test_lora.safetensors",
                "strength_model": strength,
                "strength_clip": strength,
            },
        }
        prompt["3"]["inputs"]["model"] = ["10", 0]
        prompt["6"]["inputs"]["clip"] = ["10", 1]
        return image_of(sd_folders, run(executor, prompt))

    base = image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors")))
    assert np.array_equal(with_lora(0.0), base)
    assert not np.array_equal(with_lora(1.0), base)
    assert np.array_equal(image_of(sd_folders, run(executor, text_to_image("tiny_sd1.safetensors"))), base)


def test_broken_checkpoint_is_a_clear_node_error(
    executor: Executor, sd_folders: Folders, tmp_path: Any
) -> None:
    folder = tmp_path / "ckpts"
    folder.mkdir()
    (folder / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header")
    sd_folders.models["checkpoints"] = [folder]
    recorder = Recorder()
    result = run(executor, text_to_image("broken.safetensors"), recorder)
    assert result.status == "error"
    error = recorder.of("execution_error")[0]
    assert error["node_id"] == "4" and error["node_type"] == "CheckpointLoaderSimple"
    assert "broken.safetensors" in error["exception_message"]
