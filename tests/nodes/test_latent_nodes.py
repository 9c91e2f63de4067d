"""Latent nodes on small tensors, through the registry and executor, against hand-worked values."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.harness import call


def latent(batch: int = 1, channels: int = 4, height: int = 2, width: int = 2, start: float = 0.0) -> dict:
    count = batch * channels * height * width
    return {"samples": torch.arange(start, start + count).reshape(batch, channels, height, width)}


def test_composite_pastes_and_clips_at_the_edge(executor: Executor) -> None:
    target = {"samples": torch.zeros(1, 1, 4, 4)}
    source = {"samples": torch.ones(1, 1, 3, 3)}
    (out,) = call(executor, "LatentComposite", samples_to=target, samples_from=source, x=16, y=8, feather=0)
    expected = torch.zeros(4, 4)
    expected[1:4, 2:4] = 1.0
    assert torch.equal(out["samples"][0, 0], expected)


def test_composite_feather_ramps_inner_edges(executor: Executor) -> None:
    target = {"samples": torch.zeros(1, 1, 1, 6)}
    source = {"samples": torch.ones(1, 1, 1, 4)}
    (out,) = call(executor, "LatentComposite", samples_to=target, samples_from=source, x=8, y=0, feather=16)
    # feather 2: both inner edges (left at x=1, right ending at 5 < 6) ramp 1/2, 1
    assert out["samples"][0, 0, 0].tolist() == [0.0, 0.5, 1.0, 1.0, 0.5, 0.0]


def test_composite_masked_blends_with_mask(executor: Executor) -> None:
    destination = {"samples": torch.zeros(1, 1, 2, 2)}
    source = {"samples": torch.full((1, 1, 2, 2), 2.0)}
    mask = torch.tensor([[[0.0, 0.25], [0.5, 1.0]]])
    (out,) = call(
        executor,
        "LatentCompositeMasked",
        destination=destination,
        source=source,
        x=0,
        y=0,
        resize_source=False,
        mask=mask,
    )
    assert out["samples"][0, 0].tolist() == [[0.0, 0.5], [1.0, 2.0]]
    (whole,) = call(
        executor,
        "LatentCompositeMasked",
        destination=destination,
        source=source,
        x=8,
        y=0,
        resize_source=False,
    )
    assert whole["samples"][0, 0].tolist() == [[0.0, 2.0], [0.0, 2.0]]


def test_blend_weights_first_by_factor(executor: Executor) -> None:
    first, second = {"samples": torch.full((1, 4, 2, 2), 2.0)}, {"samples": torch.zeros(1, 4, 2, 2)}
    (out,) = call(executor, "LatentBlend", samples1=first, samples2=second, blend_factor=0.25)
    assert torch.allclose(out["samples"], torch.full((1, 4, 2, 2), 0.5))


def test_crop_rotate_flip(executor: Executor) -> None:
    big = {"samples": torch.arange(144.0).reshape(1, 1, 12, 12)}
    (crop,) = call(executor, "LatentCrop", samples=big, width=64, height=64, x=80, y=8)
    # x // 8 = 10 is pulled back to 12 - 8 = 4 so that at least 8 columns remain
    assert crop["samples"].shape == (1, 1, 8, 8) and crop["samples"][0, 0, 0, 0].item() == 12 + 4
    small = {"samples": torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])}
    (rotated,) = call(executor, "LatentRotate", samples=small, rotation="90 degrees")
    assert rotated["samples"][0, 0].tolist() == [[3.0, 1.0], [4.0, 2.0]]  # clockwise
    (flipped,) = call(executor, "LatentFlip", samples=small, flip_method="x-axis: vertically")
    assert flipped["samples"][0, 0].tolist() == [[3.0, 4.0], [1.0, 2.0]]
    (mirrored,) = call(executor, "LatentFlip", samples=small, flip_method="y-axis: horizontally")
    assert mirrored["samples"][0, 0].tolist() == [[2.0, 1.0], [4.0, 3.0]]


def test_from_batch_repeat_and_batch_keep_seed_indices(executor: Executor) -> None:
    batch = latent(batch=4)
    (picked,) = call(executor, "LatentFromBatch", samples=batch, batch_index=2, length=5)
    assert picked["batch_index"] == [2, 3] and torch.equal(picked["samples"], batch["samples"][2:])
    (repeated,) = call(executor, "RepeatLatentBatch", samples=picked, amount=3)
    assert repeated["samples"].shape[0] == 6 and repeated["batch_index"] == [2, 3, 4, 5, 6, 7]
    (joined,) = call(executor, "LatentBatch", samples1=picked, samples2=latent(batch=1, height=4, width=4))
    assert joined["samples"].shape == (3, 4, 2, 2) and joined["batch_index"] == [2, 3, 0]


def test_seed_behavior(executor: Executor) -> None:
    batch = {**latent(batch=3), "batch_index": [5, 6, 7]}
    (fixed,) = call(executor, "LatentBatchSeedBehavior", samples=batch, seed_behavior="fixed")
    assert fixed["batch_index"] == [5, 5, 5]
    (random,) = call(executor, "LatentBatchSeedBehavior", samples=batch, seed_behavior="random")
    assert "batch_index" not in random


def test_rebatch_regroups_by_size_and_keeps_masks(executor: Executor) -> None:
    masked = {**latent(batch=3), "noise_mask": torch.zeros(1, 1, 16, 16)}
    (batches,) = call(executor, "RebatchLatents", latents=masked, batch_size=2)
    assert [b["samples"].shape[0] for b in batches] == [2, 1]
    assert [b["batch_index"] for b in batches] == [[0, 1], [2]]
    assert batches[0]["noise_mask"].shape == (2, 1, 16, 16)
    (plain,) = call(executor, "RebatchLatents", latents=latent(batch=3), batch_size=4)
    assert len(plain) == 1 and "noise_mask" not in plain[0]  # an all-ones mask is dropped


def test_arithmetic(executor: Executor) -> None:
    first, second = latent(batch=2), {"samples": torch.ones(1, 4, 2, 2)}
    (added,) = call(executor, "LatentAdd", samples1=first, samples2=second)
    assert torch.equal(added["samples"], first["samples"] + 1)  # second repeated to the batch
    (subtracted,) = call(executor, "LatentSubtract", samples1=first, samples2=second)
    assert torch.equal(subtracted["samples"], first["samples"] - 1)
    (scaled,) = call(executor, "LatentMultiply", samples=first, multiplier=-0.5)
    assert torch.equal(scaled["samples"], first["samples"] * -0.5)


def test_interpolate_mixes_direction_and_length(executor: Executor) -> None:
    a = {"samples": torch.tensor([3.0, 0.0, 0.0, 0.0]).reshape(1, 4, 1, 1)}
    b = {"samples": torch.tensor([0.0, 1.0, 0.0, 0.0]).reshape(1, 4, 1, 1)}
    (half,) = call(executor, "LatentInterpolate", samples1=a, samples2=b, ratio=0.5)
    # direction (1, 1)/√2, length 0.5·3 + 0.5·1 = 2
    expected = torch.tensor([2 / 2**0.5, 2 / 2**0.5, 0.0, 0.0])
    assert torch.allclose(half["samples"].flatten(), expected)
    (same,) = call(executor, "LatentInterpolate", samples1=a, samples2=b, ratio=1.0)
    assert torch.allclose(same["samples"], a["samples"])


def test_save_and_load_latent_roundtrip(executor: Executor, loom_folders: Folders) -> None:
    samples = latent(batch=2)
    (shown,) = call(executor, "SaveLatent", samples=samples, filename_prefix="latents/run")
    saved = shown["latents"][0]
    assert saved == {"filename": "run_00001_.latent", "subfolder": "latents", "type": "output"}
    path = loom_folders.output / "latents" / saved["filename"]
    assert torch.equal(load_file(str(path))["latent_tensor"], samples["samples"])
    (loom_folders.input / "run.latent").write_bytes(path.read_bytes())
    (loaded,) = call(executor, "LoadLatent", latent="run.latent")
    assert torch.equal(loaded["samples"], samples["samples"])


def test_load_latent_of_the_old_format_is_rescaled(executor: Executor, loom_folders: Folders) -> None:
    save_file({"latent_tensor": torch.full((1, 4, 1, 1), 0.18215)}, str(loom_folders.input / "old.latent"))
    (loaded,) = call(executor, "LoadLatent", latent="old.latent")
    assert torch.allclose(loaded["samples"], torch.ones(1, 4, 1, 1))


def test_vae_encode_tiled_matches_whole_encode(executor: Executor, tiny_models_dir: Path) -> None:
    from engine.diffusion.handles import load

    vae = load(tiny_models_dir / "checkpoints" / "tiny_sd1.safetensors").vae
    pixels = torch.rand(1, 128, 128, 3, generator=torch.Generator().manual_seed(0))
    (whole,) = call(executor, "VAEEncode", pixels=pixels, vae=vae)
    (one_tile,) = call(
        executor,
        "VAEEncodeTiled",
        pixels=pixels,
        vae=vae,
        tile_size=512,  # every one of ComfyUI's three tilings covers the 128² image in one tile
        overlap=0,
        temporal_size=64,
        temporal_overlap=8,
    )
    assert torch.allclose(one_tile["samples"], whole["samples"])
    (tiled,) = call(
        executor,
        "VAEEncodeTiled",
        pixels=pixels,
        vae=vae,
        tile_size=64,
        overlap=16,
        temporal_size=64,
        temporal_overlap=8,
    )
    assert tiled["samples"].shape == whole["samples"].shape
    assert not torch.allclose(tiled["samples"], whole["samples"])  # really tiled
    assert (tiled["samples"] - whole["samples"]).abs().mean() < whole["samples"].abs().mean()


@pytest.mark.parametrize("node", ["LatentAdd", "LatentSubtract"])
def test_arithmetic_resizes_second_operand(executor: Executor, node: str) -> None:
    first, second = {"samples": torch.zeros(1, 4, 4, 4)}, {"samples": torch.ones(1, 4, 2, 2)}
    (out,) = call(executor, node, samples1=first, samples2=second)
    assert out["samples"].shape == (1, 4, 4, 4) and out["samples"].abs().min().item() == pytest.approx(1.0)
