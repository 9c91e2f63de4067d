"""CheckpointSave, ModelSave, CLIPSave and VAESave: files under output/ named as ComfyUI names them, with
the patches baked in and ComfyUI's metadata, that load back in Loom to the same weights and images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors import safe_open

from engine.diffusion import handles
from engine.diffusion.clip_loader import load_clip_files
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.nodes.merge_fixtures import add_checkpoint
from tests.nodes.sd_fixtures import text_to_image

CKPT = "tiny_sd1.safetensors"


def run(executor: Executor, prompt: dict[str, Any], extra: dict[str, Any] | None = None) -> Any:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "save", checked.outputs, extra)
    assert result.status == "success", result.error
    return result


def image(folders: Folders, result: Any, node: str = "9") -> np.ndarray:
    info = result.outputs[node]["images"][0]
    return np.asarray(PILImage.open(folders.output / info["subfolder"] / info["filename"]))


def header(path: Path) -> tuple[set[str], dict[str, str]]:
    with safe_open(str(path), "pt") as f:
        return set(f.keys()), dict(f.metadata() or {})


def merged_prompt(other: str) -> dict[str, Any]:
    """text_to_image on ModelMergeSimple(0.5) of two checkpoints and CLIPMergeSimple(0.3) of their CLIPs,
    with CheckpointSave of the merge."""
    prompt = text_to_image(CKPT)
    prompt["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": other}}
    prompt["30"] = {
        "class_type": "ModelMergeSimple",
        "inputs": {"model1": ["4", 0], "model2": ["50", 0], "ratio": 0.5},
    }
    prompt["31"] = {
        "class_type": "CLIPMergeSimple",
        "inputs": {"clip1": ["4", 1], "clip2": ["50", 1], "ratio": 0.3},
    }
    prompt["3"]["inputs"]["model"] = ["30", 0]
    for encode in ("6", "7"):
        prompt[encode]["inputs"]["clip"] = ["31", 0]
    prompt["40"] = {
        "class_type": "CheckpointSave",
        "inputs": {
            "model": ["30", 0],
            "clip": ["31", 0],
            "vae": ["4", 2],
            "filename_prefix": "checkpoints/ComfyUI",
        },
    }
    return prompt


def test_checkpoint_save_round_trip_gives_the_same_image(
    executor: Executor, sd_folders: Folders, tmp_path: Path
) -> None:
    other = add_checkpoint(sd_folders, tmp_path / "more", "sd1", seed=1)
    workflow = {"nodes": [], "links": []}
    merged = run(executor, merged_prompt(other), {"extra_pnginfo": {"workflow": workflow}})
    saved = sd_folders.output / "checkpoints" / "ComfyUI_00001_.safetensors"
    keys, metadata = header(saved)
    assert any(k.startswith("model.diffusion_model.") for k in keys)
    assert any(k.startswith("cond_stage_model.transformer.") for k in keys)
    assert any(k.startswith("first_stage_model.") for k in keys)
    assert metadata["modelspec.predict_key"] == "epsilon" and json.loads(metadata["workflow"]) == workflow
    assert json.loads(metadata["prompt"])["40"]["class_type"] == "CheckpointSave"
    assert "modelspec.architecture" not in metadata  # ComfyUI writes modelspec only for SDXL-like models

    sd_folders.models["checkpoints"] = [*sd_folders.models["checkpoints"], saved.parent]
    reloaded = run(executor, text_to_image(saved.name))
    assert np.array_equal(image(sd_folders, reloaded), image(sd_folders, merged))
    plain = run(executor, text_to_image(CKPT))
    assert not np.array_equal(image(sd_folders, plain), image(sd_folders, merged))
    # A second save is numbered after the first, as ComfyUI numbers them.
    again = merged_prompt(other)
    again["30"]["inputs"]["ratio"] = 0.6
    run(executor, again)
    assert (saved.parent / "ComfyUI_00002_.safetensors").is_file()


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_checkpoint_save_keeps_every_weight_bit_for_bit(
    executor: Executor, sd_folders: Folders, family: str
) -> None:
    name = f"tiny_{family}.safetensors"
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}},
        "2": {
            "class_type": "CheckpointSave",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "vae": ["1", 2],
                "filename_prefix": f"checkpoints/{family}",
            },
        },
    }
    run(executor, prompt)
    saved = sd_folders.output / "checkpoints" / f"{family}_00001_.safetensors"
    keys, metadata = header(saved)
    original_keys, _ = header(sd_folders.model_path("checkpoints", name))
    if family == "sd2":
        assert keys == original_keys | {"v_pred"} and metadata["modelspec.predict_key"] == "v"
    else:
        assert keys == original_keys and metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base"
        assert metadata["modelspec.title"] == f"{family} 1" and metadata["modelspec.implementation"] == "sgm"
    before = handles.load(sd_folders.model_path("checkpoints", name))
    after = handles.load(saved)
    assert after.model.model.model_type == before.model.model.model_type
    for a, b in (
        (before.model.model_state_dict(), after.model.model_state_dict()),
        (before.clip.get_sd(), after.clip.get_sd()),
        (before.vae.get_sd(), after.vae.get_sd()),
    ):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_model_save_writes_the_unet_with_its_patches(
    executor: Executor, sd_folders: Folders, tmp_path: Path
) -> None:
    other = add_checkpoint(sd_folders, tmp_path / "more", "sd1", seed=1)
    prompt = merged_prompt(other)
    prompt = {k: prompt[k] for k in ("4", "50", "30")}
    prompt["40"] = {
        "class_type": "ModelSave",
        "inputs": {"model": ["30", 0], "filename_prefix": "diffusion_models/ComfyUI"},
    }
    run(executor, prompt)
    saved = sd_folders.output / "diffusion_models" / "ComfyUI_00001_.safetensors"
    keys, _ = header(saved)
    assert keys and all(k.startswith("model.diffusion_model.") for k in keys)
    first = handles.load(sd_folders.model_path("checkpoints", CKPT)).model
    second = handles.load(sd_folders.model_path("checkpoints", other)).model
    reloaded = handles.load(saved)
    assert reloaded.clip is None and reloaded.vae is None
    got = reloaded.model.model_state_dict()
    a, b = first.model_state_dict(), second.model_state_dict()
    assert all(torch.allclose(got[k], a[k] * 0.5 + 0.5 * b[k]) for k in a)
    # ComfyUI loads it with UNETLoader from models/diffusion_models; so does Loom.
    folders_prompt = text_to_image(CKPT)
    folders_prompt["20"] = {
        "class_type": "UNETLoader",
        "inputs": {"unet_name": saved.name, "weight_dtype": "default"},
    }
    folders_prompt["3"]["inputs"]["model"] = ["20", 0]
    sampled = merged_prompt(other)
    sampled["6"]["inputs"]["clip"] = sampled["7"]["inputs"]["clip"] = ["4", 1]
    del sampled["31"], sampled["40"]
    sd_folders.models["diffusion_models"] = [saved.parent]
    assert np.array_equal(
        image(sd_folders, run(executor, folders_prompt)), image(sd_folders, run(executor, sampled))
    )


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_clip_save_writes_one_file_per_encoder_that_loads_back(
    executor: Executor, sd_folders: Folders, family: str
) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": f"tiny_{family}.safetensors"}},
        "2": {"class_type": "CLIPSave", "inputs": {"clip": ["1", 1], "filename_prefix": "clip/ComfyUI"}},
    }
    run(executor, prompt)
    modules = ["clip_l"] if family == "sd1" else ["clip_l", "clip_g"]
    paths = [sd_folders.output / "clip" / f"ComfyUI_{m}_00001_.safetensors" for m in modules]
    for path in paths:
        keys, metadata = header(path)
        assert metadata["format"] == "pt" and all(
            k.startswith(("text_model.", "text_projection")) for k in keys
        )
    clip = handles.load(sd_folders.model_path("checkpoints", f"tiny_{family}.safetensors")).clip
    reloaded = load_clip_files(list(paths), None)
    tokens = clip.tokenize("a red circle")
    assert reloaded.family == clip.family
    assert torch.equal(reloaded.encode_from_tokens(tokens), clip.encode_from_tokens(tokens))
    # Through the loader nodes, as a ComfyUI user loads them from models/text_encoders.
    sd_folders.models["text_encoders"] = [paths[0].parent]
    names = [p.name for p in paths]
    loader = (
        {"class_type": "CLIPLoader", "inputs": {"clip_name": names[0], "type": "stable_diffusion"}}
        if family == "sd1"
        else {
            "class_type": "DualCLIPLoader",
            "inputs": {"clip_name1": names[0], "clip_name2": names[1], "type": "sdxl"},
        }
    )
    direct, via_files = (
        text_to_image(f"tiny_{family}.safetensors"),
        text_to_image(f"tiny_{family}.safetensors"),
    )
    via_files["20"] = loader
    via_files["6"]["inputs"]["clip"] = via_files["7"]["inputs"]["clip"] = ["20", 0]
    assert np.array_equal(
        image(sd_folders, run(executor, via_files)), image(sd_folders, run(executor, direct))
    )


def test_vae_save_loads_back_through_vae_loader(executor: Executor, sd_folders: Folders) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": CKPT}},
        "2": {"class_type": "VAESave", "inputs": {"vae": ["1", 2], "filename_prefix": "vae/ComfyUI_vae"}},
    }
    run(executor, prompt)
    saved = sd_folders.output / "vae" / "ComfyUI_vae_00001_.safetensors"
    keys, _ = header(saved)
    assert "decoder.conv_in.weight" in keys and not any(k.startswith("first_stage_model.") for k in keys)
    sd_folders.models["vae"] = [saved.parent]
    direct = text_to_image(CKPT)
    via_file = text_to_image(CKPT)
    via_file["20"] = {"class_type": "VAELoader", "inputs": {"vae_name": saved.name}}
    via_file["8"]["inputs"]["vae"] = ["20", 0]
    assert np.array_equal(
        image(sd_folders, run(executor, via_file)), image(sd_folders, run(executor, direct))
    )
