"""Z-Image Turbo end to end on tiny stand-ins in ComfyUI's layout: detection, conversion against diffusers,
the Qwen3 text encoder and tokenizer, the front end's default graph, fp8 loading, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures_new import (
    tiny_zimage_transformer,
    write_zimage_files,
    zimage_to_comfy,
    zimage_workflow,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def zimage_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("zimage_models")
    return root, write_zimage_files(root)


@pytest.fixture
def zimage_folders(loom_folders: Folders, zimage_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(zimage_models[0].parent, models_base=zimage_models[0]).models
    return loom_folders


def test_detected_with_and_without_prefix() -> None:
    from engine.models import flow_families

    state = zimage_to_comfy(tiny_zimage_transformer().state_dict())
    for prefix in ("", "model.diffusion_model."):
        detected = flow_families.detect({prefix + k: tuple(v.shape) for k, v in state.items()})
        assert detected is not None and (detected.family, detected.prefix) == ("zimage", prefix)


def test_loaded_transformer_matches_the_diffusers_original() -> None:
    from engine.models import zimage

    model = tiny_zimage_transformer(seed=5)
    loaded = zimage.load_transformer(zimage_to_comfy(model.state_dict()), "", torch.float32)
    assert loaded.config.n_layers == 2 and loaded.config.n_refiner_layers == 1 and loaded.config.n_heads == 2
    x = [torch.randn(16, 1, 8, 6)]
    caption = [torch.randn(5, 32)]
    t = torch.tensor([0.3])
    with torch.no_grad():
        expected = model(x, t, caption, return_dict=False)[0][0]
        actual = loaded(x, t, caption, return_dict=False)[0][0]
    assert torch.allclose(expected, actual, atol=1e-5)


def test_qwen3_encoder_reads_the_penultimate_layer_of_the_templated_prompt(
    zimage_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.models.flow_families import load_clip
    from engine.models.tokenizer import qwen

    root, made = zimage_models
    clip = load_clip([root / "text_encoders" / "qwen_3_4b.safetensors"], "lumina2")
    assert clip.family == "zimage" and clip.roles == ("qwen3_4b",)
    tokens = clip.tokenize("a (red:1.5) fox")
    ids = [pair[0] for pair in tokens["qwen3_4b"][0]]
    template = "<|im_start|>user\na (red:1.5) fox<|im_end|>\n<|im_start|>assistant\n"
    assert ids == qwen.encode(template) and all(pair[1] == 1.0 for pair in tokens["qwen3_4b"][0])
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    reference = made["qwen3"].float()
    with torch.no_grad():
        hidden = reference(torch.tensor([ids]), output_hidden_states=True).hidden_states[-2]
    assert pooled is None and cond.shape == (1, len(ids), 32)
    assert torch.allclose(cond, hidden.to(torch.bfloat16).float(), atol=0.05)


def test_front_end_default_graph_runs_and_repeats(executor: Executor, zimage_folders: Folders) -> None:
    first = image_of(zimage_folders, run(executor, zimage_workflow(seed=3)), "10")
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(zimage_folders, run(executor, zimage_workflow(seed=3)), "10")
    other = image_of(zimage_folders, run(executor, zimage_workflow(seed=4)), "10")
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_fp8_file_stays_fp8_and_runs(executor: Executor, zimage_folders: Folders) -> None:
    from engine import folders
    from engine.models.flow_families import load_diffusion_model

    path = folders.current().model_path("diffusion_models", "z_image_turbo_fp8_e4m3fn.safetensors")
    model = load_diffusion_model(path)
    assert model.model.diffusion_model.layers[0].attention.to_q.weight.dtype == torch.float8_e4m3fn
    assert model.get_model_object("model_sampling").shift == 3.0
    pixels = image_of(
        zimage_folders, run(executor, zimage_workflow(unet="z_image_turbo_fp8_e4m3fn.safetensors")), "10"
    )
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_skip_layer_guidance_reaches_its_layers(executor: Executor, zimage_folders: Folders) -> None:
    plain = image_of(zimage_folders, run(executor, zimage_workflow(seed=3)), "10")
    prompt = zimage_workflow(seed=3)
    prompt["20"] = {
        "class_type": "SkipLayerGuidanceDiT",
        "inputs": {
            "model": ["4", 0],
            "double_layers": "1",
            "single_layers": "",
            "scale": 2.0,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "rescaling_scale": 0.0,
        },
    }
    prompt["8"]["inputs"]["model"] = ["20", 0]
    guided = image_of(zimage_folders, run(executor, prompt), "10")
    assert np.isfinite(guided).all() and not np.array_equal(plain, guided)


def test_int8_convrot_file_loads_dequantised(
    executor: Executor, zimage_folders: Folders, zimage_models: tuple[Path, dict[str, Any]]
) -> None:
    """ComfyUI's `*_int8_convrot` files (the Z-Image int8 templates) load in any flow family: each
    quantised matrix is int8 × its row scale, rotated back, and the graph runs."""
    import re

    from safetensors.torch import load_file, save_file

    from engine.models.flow_families import load_diffusion_model
    from engine.models.int8_convrot import hadamard
    from tests.nodes.qwen21_fixtures import quantise_convrot

    root = zimage_models[0]
    plain = load_file(str(root / "diffusion_models" / "z_image_turbo_bf16.safetensors"))
    pattern = re.compile(r"layers\.\d+\.attention\.qkv\.weight$")
    quantised = quantise_convrot(plain, pattern=pattern)
    assert any(key.endswith(".comfy_quant") for key in quantised)
    path = root / "diffusion_models" / "z_image_turbo_int8_convrot.safetensors"
    save_file(quantised, str(path))
    model = load_diffusion_model(path).model.diffusion_model
    key = next(k for k in quantised if pattern.search(k))
    rows, cols = quantised[key].shape
    expected = (quantised[key].float() * quantised[key + "_scale"]).reshape(rows, -1, 16) @ hadamard(16)
    layer = int(key.split(".")[1])
    loaded = torch.cat([getattr(model.layers[layer].attention, n).weight for n in ("to_q", "to_k", "to_v")])
    assert torch.allclose(loaded.float(), expected.reshape(rows, cols), atol=1e-2)
    assert torch.allclose(loaded.float(), plain[key].float(), atol=0.05)
    pixels = image_of(zimage_folders, run(executor, zimage_workflow(unet=path.name)), "10")
    assert np.isfinite(pixels).all() and pixels.std() > 0
