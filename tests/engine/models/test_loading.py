"""Diffusers folders, prediction-type rules, the refiner layout, load speed and import cost."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.models.checkpoint import load_checkpoint
from engine.models.detect import detect_model
from engine.models.errors import UnsupportedModelError
from engine.models.files import read_header
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny

from .helpers import assert_same_weights

PROBE = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias"


def _write_folder(folder: Path, family: str) -> None:
    models = build_tiny(family)  # type: ignore[arg-type]
    pipeline = "StableDiffusionXLPipeline" if family == "sdxl" else "StableDiffusionPipeline"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    models.unet.save_pretrained(folder / "unet")
    models.vae.save_pretrained(folder / "vae")
    for i, encoder in enumerate(models.text_encoders):
        encoder.save_pretrained(folder / ("text_encoder" if i == 0 else f"text_encoder_{i + 1}"))
    (folder / "scheduler").mkdir()
    prediction = "v_prediction" if models.prediction_type == "v_prediction" else "epsilon"
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))


@pytest.mark.parametrize("family", ["sd2", "sdxl"])
def test_diffusers_folder(tmp_path: Path, family: str) -> None:
    _write_folder(tmp_path / "model", family)
    loaded = load_checkpoint(tmp_path / "model")
    models = build_tiny(family)  # type: ignore[arg-type]
    assert loaded.family == family
    assert loaded.prediction_type == models.prediction_type
    assert loaded.pad_ids == ([0] if family == "sd2" else [49407, 0])
    assert_same_weights(models.unet, loaded.unet)
    assert_same_weights(models.vae, loaded.vae)
    for a, b in zip(models.text_encoders, loaded.text_encoders, strict=True):
        assert type(a) is type(b)
        assert_same_weights(a, b)


def test_sd2_prediction_rules(tmp_path: Path) -> None:
    models = build_tiny("sd2")
    path = save_single_file(
        tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd2", {}, "v_prediction"
    )
    state = load_file(str(path))
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert detect_model(shapes, read_header(path).metadata).prediction_type == "v_prediction"
    assert detect_model(shapes, {}).prediction_type == "eps"
    assert detect_model(shapes, {"prediction_type": "v-prediction"}).prediction_type == "v_prediction"
    assert detect_model(shapes | {"v_pred": ()}, {}).prediction_type == "v_prediction"
    # ComfyUI's heuristic for SD2 files with no marker: the spread of one norm bias.
    for std, expected in ((0.2, "v_prediction"), (0.01, "eps")):
        probe = torch.randn(320, generator=torch.Generator().manual_seed(0)) * std
        probed = shapes | {PROBE: (320,)}
        assert detect_model(probed, {}, {PROBE: probe}.__getitem__).prediction_type == expected


def test_v_pred_key_in_sd1_file(tmp_path: Path) -> None:
    models = build_tiny("sd1")
    path = save_single_file(tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd1")
    state = load_file(str(path)) | {"v_pred": torch.tensor([])}
    save_file(state, str(tmp_path / "v.safetensors"))
    loaded = load_checkpoint(tmp_path / "v.safetensors")
    assert (loaded.family, loaded.prediction_type) == ("sd1", "v_prediction")


def test_sdxl_refiner_layout(tmp_path: Path) -> None:
    models = build_tiny("sdxl")
    clip_g = models.text_encoders[1]
    path = save_single_file(tmp_path / "r.safetensors", models.unet, models.vae, [clip_g], "sdxl_refiner")
    assert "conditioner.embedders.0.model.text_projection" in read_header(path).shapes
    loaded = load_checkpoint(path)
    assert loaded.family == "sdxl_refiner"
    assert loaded.pad_ids == [0]
    assert loaded.vae_scaling_factor == 0.13025
    assert_same_weights(clip_g, loaded.text_encoders[0])
    assert_same_weights(models.unet, loaded.unet)


def test_load_time_of_an_8mb_model(tmp_path: Path) -> None:
    import diffusers  # noqa: F401  (import time is a one-off per process, not load time)

    models = build_tiny("sd1")
    path = save_single_file(
        tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd1", dtype=torch.float16
    )
    load_checkpoint(path)
    start = time.perf_counter()
    load_checkpoint(path)
    elapsed = time.perf_counter() - start
    print(f"\nload of a {path.stat().st_size / 1e6:.1f} MB fp16 SD1 checkpoint: {elapsed * 1000:.0f} ms")
    assert elapsed < 5


def test_library_import_is_light() -> None:
    code = (
        "import sys, engine.models.checkpoint, engine.models.save, engine.models.detect, engine.models.tiny;"
        "import engine.models.tokenizer, engine.models.keymap, engine.models.files;"
        "print(sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_real_file_extras_are_ignored(tmp_path: Path) -> None:
    """Keys real checkpoints carry beside the weights (schedules, EMA bookkeeping, buffers, logit scale)."""
    for family, extras in {
        "sd1": {
            "alphas_cumprod": torch.rand(1000),
            "model_ema.decay": torch.tensor(0.9999),
            "cond_stage_model.transformer.text_model.embeddings.position_ids": torch.arange(77)[None],
        },
        "sd2": {"cond_stage_model.model.logit_scale": torch.tensor(4.6)},
    }.items():
        models = build_tiny(family)  # type: ignore[arg-type]
        path = tmp_path / f"{family}.safetensors"
        save_single_file(path, models.unet, models.vae, models.text_encoders, models.family)
        save_file(load_file(str(path)) | extras, str(path))
        loaded = load_checkpoint(path)
        assert loaded.family == family
        assert_same_weights(models.text_encoders[0], loaded.text_encoders[0])


def test_sd1_text_keys_without_text_model_prefix(tmp_path: Path) -> None:
    """Some early SD1 files name CLIP-L keys without `text_model.`."""
    models = build_tiny("sd1")
    path = save_single_file(tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd1")
    old_names = {
        k.replace(".transformer.text_model.", ".transformer."): v for k, v in load_file(str(path)).items()
    }
    save_file(old_names, str(path))
    loaded = load_checkpoint(path)
    assert_same_weights(models.text_encoders[0], loaded.text_encoders[0])


def test_unet_only_file_without_text_encoder(tmp_path: Path) -> None:
    models = build_tiny("sd1")
    path = save_single_file(tmp_path / "m.safetensors", models.unet, None, [], "sd1")
    # The family Loom recorded when it wrote the file (ModelSave does the same) places a bare UNet.
    loaded = load_checkpoint(path)
    assert loaded.family == "sd1" and not loaded.text_encoders and loaded.vae is None
    # Without it, tiny widths match no full-size family, so a bare UNet cannot be placed.
    save_file(load_file(str(path)), str(path))
    with pytest.raises(UnsupportedModelError, match="context width 64"):
        load_checkpoint(path)


def test_heads_come_from_metadata_when_shapes_cannot_tell(tmp_path: Path) -> None:
    models = build_tiny("sd1")
    path = save_single_file(tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd1")
    shapes = dict(read_header(path).shapes)
    shapes["cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"] = (49408, 48)
    with pytest.raises(
        UnsupportedModelError, match=r"attention heads of text encoder 0 \(48 channels\).*loom\.arch"
    ):
        detect_model(shapes, {})
    spec = detect_model(shapes, {"loom.arch": json.dumps({"text_heads": [3]})})
    assert spec.text_encoders[0].config["num_attention_heads"] == 3
