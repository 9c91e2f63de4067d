"""build_tiny → save_single_file → detect → load gives the same family, weights and outputs."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import torch

from engine.models.checkpoint import load_checkpoint
from engine.models.detect import detect_model
from engine.models.files import read_header
from engine.models.save import save_single_file

from .helpers import assert_same_weights, save_tiny, sd_context, text_outputs, unet_output

EXPECTED = {"sd1": "eps", "sd2": "v_prediction", "sdxl": "eps"}
PADS = {"sd1": [49407], "sd2": [0], "sdxl": [49407, 0]}


@pytest.fixture(scope="module", params=["sd1", "sd2", "sdxl"])
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return save_tiny(request.param, tmp_path_factory.mktemp(request.param))


def test_header_detection(saved) -> None:  # type: ignore[no-untyped-def]
    models, path = saved
    header = read_header(path)
    spec = detect_model(header.shapes, header.metadata)
    assert spec.family == models.family
    assert spec.prediction_type == EXPECTED[models.family]
    assert [te.pad_id for te in spec.text_encoders] == PADS[models.family]


def test_original_layout_prefixes(saved) -> None:  # type: ignore[no-untyped-def]
    models, path = saved
    keys = read_header(path).shapes
    assert "model.diffusion_model.input_blocks.0.0.weight" in keys
    assert "first_stage_model.decoder.conv_in.weight" in keys
    expected = {
        "sd1": ["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"],
        "sd2": ["cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight"],
        "sdxl": [
            "conditioner.embedders.0.transformer.text_model.encoder.layers.1.mlp.fc1.weight",
            "conditioner.embedders.1.model.text_projection",
            "conditioner.embedders.1.model.positional_embedding",
        ],
    }[models.family]
    assert set(expected) <= set(keys)


def test_roundtrip_is_bit_identical(saved) -> None:  # type: ignore[no-untyped-def]
    models, path = saved
    start = time.perf_counter()
    loaded = load_checkpoint(path)
    elapsed = time.perf_counter() - start
    print(f"\n{models.family}: {path.stat().st_size / 1e6:.1f} MB loaded in {elapsed * 1000:.0f} ms")
    assert loaded.family == models.family
    assert loaded.prediction_type == EXPECTED[models.family]
    assert loaded.pad_ids == PADS[models.family]
    assert loaded.vae_scaling_factor == (0.13025 if models.family == "sdxl" else 0.18215)
    assert_same_weights(models.unet, loaded.unet)
    assert_same_weights(models.vae, loaded.vae)
    assert len(loaded.text_encoders) == len(models.text_encoders)
    for a, b in zip(models.text_encoders, loaded.text_encoders, strict=True):
        assert type(a) is type(b)
        assert_same_weights(a, b)

    with torch.no_grad():
        prompt = "a (red:1.2) cat, 猫"
        pads = PADS[models.family]
        for x, y in zip(
            text_outputs(models.text_encoders, pads, prompt),
            text_outputs(loaded.text_encoders, pads, prompt),
            strict=True,
        ):
            assert torch.equal(x, y)
        context, pooled = sd_context(models.text_encoders, pads, models.family, prompt)
        expected = unet_output(models.unet, models.family, context, pooled)
        assert torch.equal(expected, unet_output(loaded.unet, models.family, context, pooled))
        latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
        assert torch.equal(models.vae.decode(latent).sample, loaded.vae.decode(latent).sample)


def test_resave_gives_the_same_file_contents(saved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    _, path = saved
    loaded = load_checkpoint(path)
    again = save_single_file(
        tmp_path / "again.safetensors",
        loaded.unet,
        loaded.vae,
        loaded.text_encoders,
        loaded.family,
        None,
        loaded.prediction_type,
    )
    # safetensors orders metadata entries arbitrarily, so compare contents rather than bytes.
    assert read_header(again) == read_header(path)
    first, second = load_file(str(path)), load_file(str(again))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_ckpt_loads_weights_only(saved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    models, path = saved
    ckpt = tmp_path / "model.ckpt"
    torch.save({"state_dict": load_file(str(path)), "global_step": 7}, ckpt)
    loaded = load_checkpoint(ckpt)
    assert loaded.family == models.family
    assert_same_weights(models.unet, loaded.unet)


def test_fp16_save_loads_as_float32(saved, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    models, _ = saved
    half = save_single_file(
        tmp_path / "half.safetensors",
        models.unet,
        models.vae,
        models.text_encoders,
        models.family,
        {"loom.note": "fp16"},
        models.prediction_type,
        dtype=torch.float16,
    )
    loaded = load_checkpoint(half)
    assert loaded.metadata["loom.note"] == "fp16"
    weight = loaded.unet.conv_in.weight
    assert weight.dtype == torch.float32
    assert torch.equal(weight, models.unet.conv_in.weight.half().float())
