"""The recipe runs end to end for a few steps and gives a checkpoint Loom loads and samples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from engine.models.checkpoint import load_checkpoint
from training.dataset import make_scenes, to_tensor
from training.generate import SamplerSettings, TextToImage
from training.models import build_vae
from training.recipe import main as recipe_main
from training.train_vae import SD1_SCALE, encode, normalise_latents


def test_latent_normalisation_keeps_decoding_and_gives_unit_latents() -> None:
    torch.manual_seed(0)
    vae = build_vae().eval()
    images = to_tensor(make_scenes(16, seed=0, two_object_prob=0.0).images)
    with torch.no_grad():
        before = vae.decode(vae.encode(images).latent_dist.mean).sample
        normalise_latents(vae, images)
        latents = encode(vae, images)
        after = vae.decode(latents / SD1_SCALE).sample
    torch.testing.assert_close(after, before, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(latents.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(latents.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)


def test_recipe_few_steps_gives_a_loadable_deterministic_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "tiny.safetensors"
    args = ["--out", str(out), "--work", str(tmp_path / "work"), "--scenes", "64", "--vae-scenes", "16"]
    args += [
        "--vae-minutes",
        "0",
        "--decoder-minutes",
        "0",
        "--vae-batch-size",
        "4",
        "--minutes",
        "0",
        "--batch-size",
        "8",
    ]
    recipe_main(args)
    assert "trained 3 steps" in (tmp_path / "work" / "loss_log.txt").read_text()
    checkpoint = load_checkpoint(out)
    assert checkpoint.family == "sd1" and checkpoint.prediction_type == "eps"
    t2i = TextToImage(checkpoint, SamplerSettings(steps=3))
    first = t2i(["a red circle on the left", ""], [1, 2])
    assert first.shape == (2, 64, 64, 3) and first.dtype == np.uint8
    np.testing.assert_array_equal(t2i(["a red circle on the left", ""], [1, 2]), first)
    alone = t2i(["a red circle on the left"], [1]).astype(int)
    assert np.abs(alone - first[:1]).max() <= 1
