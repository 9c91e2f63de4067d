"""SD3 / SD3.5 end to end on tiny stand-ins in ComfyUI's file layouts: detection, split loaders,
all-in-one checkpoint, fp8 storage, text-to-image through the executor, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures import sd3_to_comfy, sd3_workflow, tiny_sd3_transformer, write_sd3_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def sd3_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("sd3_models")
    return root, write_sd3_files(root)


@pytest.fixture
def sd3_folders(loom_folders: Folders, sd3_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(sd3_models[0].parent, models_base=sd3_models[0]).models
    return loom_folders


def _shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize(
    ("qk_norm", "dual", "variant"),
    [(False, (), "SD3"), (True, (), "SD3.5"), (True, (0,), "SD3.5 medium (MMDiT-X)")],
)
def test_detects_sd3_variants_from_comfyui_keys(qk_norm: bool, dual: tuple[int, ...], variant: str) -> None:
    from engine.models import flow_families, sd3

    model = tiny_sd3_transformer(qk_norm=qk_norm, dual=dual)
    state = sd3_to_comfy(model.state_dict(), 2)
    for prefix in ("", "model.diffusion_model."):
        detected = flow_families.detect(_shapes({prefix + k: v for k, v in state.items()}))
        assert detected is not None and (detected.family, detected.prefix, detected.variant) == (
            "sd3",
            prefix,
            variant,
        )
    config = sd3.transformer_config(_shapes(state), "")
    for key, value in config.items():
        if key != "sample_size":  # only the default size of generated position embeddings; the file has them
            assert (
                tuple(value) == tuple(model.config[key])
                if key == "dual_attention_layers"
                else value == model.config[key]
            ), key


def test_loaded_transformer_matches_the_diffusers_original() -> None:
    from engine.models import sd3

    model = tiny_sd3_transformer(seed=7, qk_norm=True, dual=(0,))
    loaded = sd3.load_transformer(sd3_to_comfy(model.state_dict(), 2), "", torch.float32)
    x, context, pooled = torch.randn(1, 16, 8, 8), torch.randn(1, 5, 192), torch.randn(1, 192)
    t = torch.tensor([500.0])
    with torch.no_grad():
        expected = model(x, context, pooled, t, return_dict=False)[0]
        actual = loaded(x, context, pooled, t, return_dict=False)[0]
    assert torch.allclose(expected, actual, atol=1e-6)


def test_non_model_file_is_refused_with_what_was_found(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from engine.models.errors import UnsupportedModelError
    from engine.models.flow_families import load_diffusion_model

    save_file({"foo.weight": torch.zeros(2, 2)}, str(tmp_path / "odd.safetensors"))
    with pytest.raises(
        UnsupportedModelError,
        match=r"odd.safetensors: not an SD3/SD3.5, Flux.1, Flux.2, Flux 3, Chroma \(Radiance\), Z-Image, "
        r"Lumina Image 2.0, Qwen-Image, Qwen-Image 2.1 or HiDream diffusion model .*foo.weight",
    ):
        load_diffusion_model(tmp_path / "odd.safetensors")


def test_text_encoder_roles_follow_keys_and_widths(sd3_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_clip

    root, _ = sd3_models
    files = [
        root / "clip" / "tiny_t5xxl_fp16.safetensors",
        root / "text_encoders" / "tiny_clip_g.safetensors",
        root / "text_encoders" / "tiny_clip_l.safetensors",
    ]
    clip = load_clip(files, "sd3")
    assert clip.roles == ("clip_l", "clip_g", "t5xxl") and clip.widths == (64, 128, 192)
    assert clip.pad_ids == (49407, 0, 0)


def test_text_to_image_through_split_loaders(executor: Executor, sd3_folders: Folders) -> None:
    first = image_of(sd3_folders, run(executor, sd3_workflow(seed=3)), "11")
    assert first.shape == (64, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(sd3_folders, run(executor, sd3_workflow(seed=3)), "11")
    other = image_of(sd3_folders, run(executor, sd3_workflow(seed=4)), "11")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_checkpoint_gives_the_split_files_image(executor: Executor, sd3_folders: Folders) -> None:
    split = image_of(sd3_folders, run(executor, sd3_workflow(seed=2)), "11")
    executor.cache.clear()
    whole = image_of(sd3_folders, run(executor, sd3_workflow(seed=2, loader="checkpoint")), "11")
    assert np.array_equal(split, whole)


def test_fp8_weights_stay_fp8_and_sample(executor: Executor, sd3_folders: Folders) -> None:
    from engine import folders
    from engine.models.flow_families import load_diffusion_model

    path = folders.current().model_path("diffusion_models", "tiny_sd3_fp8_e4m3fn.safetensors")
    model = load_diffusion_model(path)  # an fp8 file keeps fp8 storage at weight_dtype default
    linear = model.unet.transformer_blocks[0].attn.to_q
    assert linear.weight.dtype == torch.float8_e4m3fn and model.model.get_dtype() == torch.float32
    e5m2 = load_diffusion_model(path.with_name("tiny_sd3_fp8_e4m3fn.safetensors"), "fp8_e5m2")
    assert e5m2.unet.transformer_blocks[0].attn.to_q.weight.dtype == torch.float8_e5m2
    prompt = sd3_workflow(seed=3)
    prompt["1"]["inputs"].update(unet_name="tiny_sd3.safetensors", weight_dtype="fp8_e4m3fn")
    pixels = image_of(sd3_folders, run(executor, prompt), "11")
    executor.cache.clear()
    full = image_of(sd3_folders, run(executor, sd3_workflow(seed=3)), "11")
    assert pixels.std() > 0
    assert np.abs(pixels.astype(int) - full.astype(int)).mean() < 8  # fp8 rounding only


def test_clip_text_encode_sd3_and_samplers(executor: Executor, sd3_folders: Folders) -> None:
    prompt = sd3_workflow(seed=1, sampler="dpmpp_2m_sde", scheduler="beta")
    prompt["5"] = {
        "class_type": "CLIPTextEncodeSD3",
        "inputs": {
            "clip": ["2", 0],
            "clip_l": "red",
            "clip_g": "circle",
            "t5xxl": "a red circle",
            "empty_padding": "none",
        },
    }
    for sampler in ("dpmpp_2m_sde", "euler_ancestral", "uni_pc"):
        prompt["9"]["inputs"]["sampler_name"] = sampler
        pixels = image_of(sd3_folders, run(executor, prompt), "11")
        assert np.isfinite(pixels).all() and pixels.std() > 0


def test_sd35_example_workflow_validates_and_runs_with_files_named_as_it_needs(
    executor: Executor, loom_folders: Folders, sd3_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """The graph of ComfyUI_examples' SD3.5 large workflow (checkpoint without text encoders beside
    TripleCLIPLoader, a negative zeroed for the first 90% of the schedule by ConditioningSetTimestepRange),
    with tiny stand-ins under the file names it asks for."""
    import shutil

    from safetensors.torch import load_file, save_file

    source, models = sd3_models[0], tmp_path / "models"
    names = {
        "text_encoders/clip_g.safetensors": "text_encoders/tiny_clip_g.safetensors",
        "text_encoders/clip_l.safetensors": "text_encoders/tiny_clip_l.safetensors",
        "clip/t5xxl_fp16.safetensors": "clip/tiny_t5xxl_fp16.safetensors",
    }
    for name, stand_in in names.items():
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / stand_in, models / name)
    # sd3.5_large.safetensors: MMDiT and VAE, no text encoders
    everything = load_file(str(source / "checkpoints" / "tiny_sd3.5_all_in_one.safetensors"))
    (models / "checkpoints").mkdir()
    save_file({k: v for k, v in everything.items() if not k.startswith("text_encoders.")},
              str(models / "checkpoints" / "sd3.5_large.safetensors"))  # fmt: skip
    loom_folders.models = Folders.under(tmp_path, models_base=models).models
    prompt = {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd3.5_large.safetensors"}},
        "11": {
            "class_type": "TripleCLIPLoader",
            "inputs": {
                "clip_name1": "clip_g.safetensors",
                "clip_name2": "clip_l.safetensors",
                "clip_name3": "t5xxl_fp16.safetensors",
            },
        },
        "16": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a bottle with a galaxy inside", "clip": ["11", 0]},
        },
        "40": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["11", 0]}},
        "67": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["40", 0]}},
        "68": {
            "class_type": "ConditioningSetTimestepRange",
            "inputs": {"conditioning": ["67", 0], "start": 0.1, "end": 1.0},
        },
        "70": {
            "class_type": "ConditioningSetTimestepRange",
            "inputs": {"conditioning": ["40", 0], "start": 0.0, "end": 0.1},
        },
        "69": {
            "class_type": "ConditioningCombine",
            "inputs": {"conditioning_1": ["68", 0], "conditioning_2": ["70", 0]},
        },
        "13": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["4", 0], "shift": 3.0}},
        "53": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": 714,
                "steps": 3,
                "cfg": 4.5,
                "sampler_name": "euler",
                "scheduler": "sgm_uniform",
                "denoise": 1.0,
                "model": ["13", 0],
                "positive": ["16", 0],
                "negative": ["69", 0],
                "latent_image": ["53", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    pixels = image_of(loom_folders, run(executor, prompt), "9")
    assert pixels.shape == (64, 64, 3) and pixels.std() > 0


def test_t5_tokenizer_matches_transformers_on_the_same_file() -> None:
    from transformers import T5TokenizerFast

    from engine.models.tokenizer import t5

    reference = T5TokenizerFast(tokenizer_file=str(t5.DATA / "tokenizer.json"))
    for text in ["a photo of a cat", "(masterpiece:1.2), Über-große Äpfel", "日本語 123 emoji 🎨", "x" * 300]:
        assert [*t5.encode(text), t5.END_ID] == reference(text)["input_ids"]
    assert t5.pad([5, 6]) == [5, 6, 1] + [0] * 74


def test_text_encoders_leave_the_device_after_encoding(sd3_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.diffusion.devices import manager
    from engine.models.flow_families import load_clip

    root, _ = sd3_models
    files = [
        root / "text_encoders" / "tiny_clip_l.safetensors",
        root / "clip" / "tiny_t5xxl_fp16.safetensors",
    ]
    default, on_cpu = load_clip(files, "sd3"), load_clip(files, "sd3", device="cpu")
    assert on_cpu.device == "cpu" and default.device is None
    cond, pooled = default.encode_from_tokens(default.tokenize("a red circle"), return_pooled=True)
    cond_cpu, pooled_cpu = on_cpu.encode_from_tokens(on_cpu.tokenize("a red circle"), return_pooled=True)
    assert torch.equal(cond, cond_cpu) and torch.equal(pooled, pooled_cpu)
    assert cond.shape == (1, 77 + 77, 192) and pooled.shape == (1, 64 + 1280)  # CLIP-G absent: zeros
    assert not any(id(e) in manager()._on_device for e in default.encoders)


def test_conditioning_of_another_family_is_named(executor: Executor, sd3_folders: Folders) -> None:
    prompt = sd3_workflow(seed=1)
    prompt["2"] = {
        "class_type": "CLIPLoader",
        "inputs": {"clip_name": "tiny_clip_l.safetensors", "type": "sd3"},
    }
    prompt["5"]["inputs"]["text"] = "red"
    prompt["9"]["inputs"]["negative"] = ["5", 0]
    from engine.graph import validate_prompt

    checked = validate_prompt(executor.registry, prompt)
    result = executor.execute(checked.prompt, "p", checked.outputs)
    assert result.status == "error" and "pooled vector of 192" in str(result.error)


def test_flow_clip_answers_comfyui_token_api(sd3_models: tuple[Path, dict[str, Any]]) -> None:
    """tokenize gives ComfyUI's SD3 token dict; encode_from_tokens of it is CLIPTextEncode's output."""
    from engine.models.flow_families import load_clip
    from engine.models.tokenizer import t5

    root, _ = sd3_models
    names = ("text_encoders/tiny_clip_l.safetensors", "text_encoders/tiny_clip_g.safetensors")
    clip = load_clip([root / n for n in names] + [root / "clip" / "tiny_t5xxl_fp16.safetensors"], "sd3")
    tokens = clip.tokenize("a (red:1.5) circle")
    assert list(tokens) == ["g", "l", "t5xxl"]
    (window,) = tokens["t5xxl"]
    ids = t5.encode("a ") + t5.encode("red") + t5.encode(" circle")
    assert [t for t, _ in window] == [*ids, t5.END_ID] + [t5.PAD_ID] * (77 - len(ids) - 1)
    assert {w for _, w in window} == {1.0, 1.5} and len(tokens["l"][0]) == 77
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    (conditioning,) = clip.encode_from_tokens_scheduled(tokens)
    assert torch.equal(conditioning[0], cond) and torch.equal(conditioning[1]["pooled_output"], pooled)
    assert cond.shape[1] == 77 + 77
