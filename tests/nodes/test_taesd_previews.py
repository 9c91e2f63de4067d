"""`--preview-method taesd`: KSampler previews drawn by the TAESD decoder found in vae_approx, and
latent2rgb previews when the family's decoder file is missing."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.diffusion import taesd
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.conftest import Recorder
from tests.nodes.sd_fixtures import text_to_image

# A wide, flat image: the latent is 64x8, which latent2rgb draws as is and TAESD at 512x64.
WIDTH, HEIGHT = 512, 64


def previews_of(executor: Executor, method: str) -> list[tuple[int, int]]:
    prompt = text_to_image("tiny_sd1.safetensors", steps=2)
    prompt["5"]["inputs"].update(width=WIDTH, height=HEIGHT)
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    executor.cache.clear()  # the sampler runs again for each method
    recorder = Recorder()
    extra: dict[str, Any] = {"preview_method": method}
    result = executor.execute(checked.prompt, "p", checked.outputs, extra_data=extra, listener=recorder)
    assert result.status == "success", result.error
    previews = recorder.of("preview_image")
    assert previews and all(p["format"] == "JPEG" and p["node"] == "3" for p in previews)
    return [Image.open(io.BytesIO(p["image"])).size for p in previews]


def vae_approx(folders: Folders, tmp_path: Path) -> Path:
    folder = tmp_path / "vae_approx"
    folder.mkdir()
    folders.models["vae_approx"] = [folder]
    return folder


def write_decoder(path: Path) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = {k: torch.randn_like(v) * 0.05 for k, v in taesd.Decoder(4).state_dict().items()}
    save_file(state, str(path))
    return state


def test_taesd_previews_are_the_decoders_image_at_8x(
    executor: Executor, sd_folders: Folders, tmp_path: Path
) -> None:
    state = write_decoder(vae_approx(sd_folders, tmp_path) / "taesd_decoder.safetensors")
    assert "1.weight" in state and "4.conv.0.weight" in state  # ComfyUI's key layout
    assert set(previews_of(executor, "taesd")) == {(WIDTH, HEIGHT)}
    assert set(previews_of(executor, "latent2rgb")) == {(WIDTH // 8, HEIGHT // 8)}


def test_loaded_once_per_file_on_the_cpu(sd_folders: Folders, tmp_path: Path) -> None:
    path = vae_approx(sd_folders, tmp_path) / "taesd_decoder.pth"
    torch.save(write_decoder(tmp_path / "d.safetensors"), path)
    first = taesd.load_decoder(path, 4)
    assert taesd.load_decoder(path, 4) is first
    assert all(p.device.type == "cpu" for p in first.parameters())
    out = first(torch.zeros(1, 4, 3, 5))
    assert out.shape == (1, 3, 24, 40)


def test_missing_decoder_falls_back_to_latent2rgb_with_one_warning(
    executor: Executor, sd_folders: Folders, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = vae_approx(sd_folders, tmp_path)
    (folder / "taesdxl_decoder.safetensors").write_bytes(b"")  # another family's decoder is not used
    taesd._warned.clear()
    with caplog.at_level(logging.WARNING, logger="engine.diffusion.taesd"):
        assert set(previews_of(executor, "taesd")) == {(WIDTH // 8, HEIGHT // 8)}
    warnings = [r.getMessage() for r in caplog.records if r.name == "engine.diffusion.taesd"]
    assert len(warnings) == 1 and "taesd_decoder" in warnings[0] and str(folder) in warnings[0]
