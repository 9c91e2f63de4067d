"""comfy.sd.load_clip, load_text_encoder_state_dicts and load_diffusion_model for the flow families, as
packs call them (the split files of Flux, Chroma, Z-Image and Qwen-Image)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import comfy_compat
from tests.nodes.flow_fixtures import write_flux_files
from tests.nodes.flow_fixtures_new import write_zimage_files


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow_shim")
    write_flux_files(root / "flux")
    write_zimage_files(root / "zimage")
    return root


@pytest.fixture
def sd() -> Any:
    comfy_compat.install()
    return importlib.import_module("comfy.sd")


def test_load_clip_flux_and_lumina2_types(sd: Any, files: Path) -> None:
    text = files / "flux" / "text_encoders"
    flux = sd.load_clip(
        [str(text / "clip_l.safetensors"), str(text / "t5xxl_fp8_e4m3fn.safetensors")],
        clip_type=sd.CLIPType.FLUX,
    )
    assert (
        isinstance(flux, sd.CLIP) and flux.family == "flux" and set(flux.tokenize("a cat")) == {"l", "t5xxl"}
    )
    qwen = str(files / "zimage" / "text_encoders" / "qwen_3_4b.safetensors")
    zimage = sd.load_clip([qwen], clip_type=sd.CLIPType.LUMINA2)
    assert zimage.family == "zimage" and zimage.encode_from_tokens(zimage.tokenize("a cat")).shape[-1] == 32
    # ComfyUI sends a Qwen3-4B file to Z-Image whatever the type but flux
    assert sd.load_clip([qwen]).family == "zimage"


def test_load_text_encoder_state_dicts_chroma(sd: Any, files: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(str(files / "flux" / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors"))
    clip = sd.load_text_encoder_state_dicts([state], clip_type=sd.CLIPType.CHROMA)
    assert clip.family == "chroma" and clip.roles == ("t5xxl",)


def test_load_diffusion_model_split_files_and_fp8(sd: Any, files: Path) -> None:
    path = str(files / "zimage" / "diffusion_models" / "z_image_turbo_bf16.safetensors")
    model = sd.load_diffusion_model(path)
    assert model.family == "zimage"
    fp8 = sd.load_diffusion_model(path, model_options={"dtype": torch.float8_e4m3fn})
    assert fp8.unet.layers[0].attention.to_q.weight.dtype == torch.float8_e4m3fn


def test_clip_loader_stable_diffusion_type_loads_a_clip_file(files: Path) -> None:
    from engine.models.flow_families import load_clip

    clip = load_clip([files / "flux" / "text_encoders" / "clip_l.safetensors"], "stable_diffusion")
    assert clip.family == "sd1" and clip.encode_from_tokens(clip.tokenize("a cat")).shape == (1, 77, 64)
