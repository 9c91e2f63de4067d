"""A pack using CLIP, VAE, comfy.sd and comfy.utils as real packs do, against Loom's own nodes."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.testing import PackHarness

PACK = Path(__file__).parent / "clipvae_pack"


@pytest.fixture
def pack(loom_pack: Any, tiny_models_dir: Path) -> PackHarness:
    harness: PackHarness = loom_pack(PACK)
    checkpoints = harness.folders.models["checkpoints"][0]
    checkpoints.mkdir(parents=True, exist_ok=True)
    for family in ("sd1", "sdxl"):
        shutil.copy(tiny_models_dir / "checkpoints" / f"tiny_{family}.safetensors", checkpoints)
    return harness


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def compared(pack: PackHarness, prompt: dict[str, Any], node_id: str = "99") -> dict[str, Any]:
    result = pack.run(prompt)
    assert result.status == "success", result.error
    return result.outputs[node_id]


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
@pytest.mark.parametrize("text", ["a red circle", "a (red:1.3) ((circle)), " * 9, ""])
def test_pack_encoding_is_bit_identical_to_clip_text_encode(
    pack: PackHarness, family: str, text: str
) -> None:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name=f"tiny_{family}.safetensors"),
        "2": node("CLIPTextEncode", text=text, clip=["1", 1]),
        "3": node("PackEncode", text=text, clip=["1", 1]),
        "99": node("PackCompare", a=["2", 0], b=["3", 0]),
    }
    out = compared(pack, prompt)
    assert out["equal"] == [True], out["max_diff"]


def test_clip_skip_through_clone_matches_clip_set_last_layer(pack: PackHarness) -> None:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name="tiny_sd1.safetensors"),
        "2": node("CLIPSetLastLayer", clip=["1", 1], stop_at_clip_layer=-2),
        "3": node("CLIPTextEncode", text="a cat", clip=["2", 0]),
        "4": node("PackClipSkip", clip=["1", 1], layer=-2),
        "5": node("PackEncode", text="a cat", clip=["4", 0]),
        "6": node("PackEncode", text="a cat", clip=["1", 1]),
        "99": node("PackCompare", a=["3", 0], b=["5", 0]),
        "98": node("PackCompare", a=["6", 0], b=["5", 0]),
    }
    result = pack.run(prompt)
    assert result.outputs["99"]["equal"] == [True]
    assert result.outputs["98"]["equal"] == [False]  # the pack's clone left the loader's CLIP alone


def test_pack_checkpoint_loader_gives_the_same_models(pack: PackHarness) -> None:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name="tiny_sdxl.safetensors"),
        "2": node("PackCheckpoint", ckpt_name="tiny_sdxl.safetensors"),
        "3": node("CLIPTextEncode", text="a blue square", clip=["1", 1]),
        "4": node("CLIPTextEncode", text="a blue square", clip=["2", 1]),
        "5": node("EmptyLatentImage", width=32, height=32, batch_size=1),
        "6": node("VAEDecode", samples=["5", 0], vae=["1", 2]),
        "7": node("VAEDecode", samples=["5", 0], vae=["2", 2]),
        "99": node("PackCompare", a=["3", 0], b=["4", 0]),
        "98": node("PackCompare", a=["6", 0], b=["7", 0]),
    }
    result = pack.run(prompt)
    assert result.outputs["99"]["equal"] == [True] and result.outputs["98"]["equal"] == [True]


def test_vae_encode_decode_match_the_nodes(pack: PackHarness) -> None:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name="tiny_sd1.safetensors"),
        "2": node("EmptyImage", width=40, height=24, batch_size=2, color=0x3366CC),
        "3": node("VAEEncode", pixels=["2", 0], vae=["1", 2]),
        "4": node("VAEDecode", samples=["3", 0], vae=["1", 2]),
        "5": node("PackEncodeDecode", vae=["1", 2], image=["2", 0]),
        "99": node("PackCompare", a=["3", 0], b=["5", 0]),
        "98": node("PackCompare", a=["4", 0], b=["5", 1]),
    }
    result = pack.run(prompt)
    assert result.outputs["99"]["equal"] == [True] and result.outputs["98"]["equal"] == [True]
    assert result.outputs["98"]["shape"] == [[2, 24, 40, 3]]


def test_tiled_decode_in_a_pack(pack: PackHarness) -> None:
    prompt = {
        "1": node("CheckpointLoaderSimple", ckpt_name="tiny_sd1.safetensors"),
        "2": node("EmptyImage", width=64, height=64, batch_size=1, color=0x80B0E0),
        "3": node("VAEEncode", pixels=["2", 0], vae=["1", 2]),
        "4": node("VAEDecode", samples=["3", 0], vae=["1", 2]),
        "5": node("PackDecodeTiled", vae=["1", 2], samples=["3", 0], tile=64),
        "6": node("PackDecodeTiled", vae=["1", 2], samples=["3", 0], tile=16),
        "99": node("PackCompare", a=["4", 0], b=["5", 0]),
        "98": node("PackCompare", a=["4", 0], b=["6", 0]),
    }
    result = pack.run(prompt)
    # Tiles as large as the latent: the three passes each decode it whole.
    assert result.outputs["99"]["shape"] == [[1, 64, 64, 3]] and result.outputs["99"]["max_diff"][0] < 1e-5
    assert result.outputs["98"]["shape"] == [[1, 64, 64, 3]] and result.outputs["98"]["max_diff"][0] > 0
    # 8×32, 32×8 and 16×16 latent tiles, overlapping by 4: 7 + 7 + 9 tiles reported as progress.
    progress = [p for p in pack.of("progress") if p["node"] == "6"]
    assert progress[-1]["max"] == 7 + 7 + 9 and progress[-1]["value"] == 23


def test_tiled_scale_in_a_pack_equals_the_whole_operation(pack: PackHarness) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (12, 20, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(pack.folders.input / "noise.png")
    prompt = {
        "1": node("LoadImage", image="noise.png"),
        "2": node(
            "ImageScale", image=["1", 0], upscale_method="nearest-exact", width=40, height=24, crop="disabled"
        ),
        "3": node("PackTiledUpscale", image=["1", 0], tile=8),
        "99": node("PackCompare", a=["2", 0], b=["3", 0]),
    }
    out = compared(pack, prompt)
    assert out["shape"] == [[1, 24, 40, 3]] and out["max_diff"][0] < 1e-6
    assert out["weights"] == [2]
