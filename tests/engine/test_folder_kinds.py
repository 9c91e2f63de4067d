"""ComfyUI's newer model kinds also read legacy folders (diffusion_models: unet; text_encoders: clip)."""

from __future__ import annotations

from pathlib import Path

from engine.folders import Folders


def test_diffusion_models_and_text_encoders_include_legacy_folders(tmp_path: Path) -> None:
    folders = Folders.under(tmp_path)
    models = tmp_path / "models"
    assert folders.models["diffusion_models"] == [models / "diffusion_models", models / "unet"]
    assert folders.models["text_encoders"] == [models / "text_encoders", models / "clip"]
    for name in (
        "unet/flux1-dev.safetensors",
        "diffusion_models/sd3.5.safetensors",
        "clip/t5xxl_fp16.safetensors",
    ):
        (models / name).parent.mkdir(parents=True, exist_ok=True)
        (models / name).write_bytes(b"x")
    assert folders.model_files("diffusion_models") == ["flux1-dev.safetensors", "sd3.5.safetensors"]
    assert folders.model_files("text_encoders") == ["t5xxl_fp16.safetensors"]
    assert (
        folders.model_path("diffusion_models", "flux1-dev.safetensors")
        == models / "unet" / "flux1-dev.safetensors"
    )
    assert folders.models["unet"] == [models / "unet"] and folders.models["clip"] == [models / "clip"]
