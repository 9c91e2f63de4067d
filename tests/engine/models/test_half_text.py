"""Half-precision text encoders computed in fp32: same outputs as converting at load; LoRA on them."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch

from engine.diffusion.clip import CLIP
from engine.diffusion.weights import patched_parameters
from engine.models.cast import CastEmbedding, CastLinear, compute_in, storage_dtype, uncast
from engine.models.checkpoint import load_checkpoint
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny

from .helpers import text_outputs


@pytest.mark.parametrize("half", [torch.float16, torch.bfloat16])
def test_half_weights_cast_per_layer_give_the_fp32_outputs_exactly(half: torch.dtype) -> None:
    encoder = build_tiny("sdxl").text_encoders[1]  # CLIP-G layout, with its projection
    stored = copy.deepcopy(encoder).to(half)
    reference = copy.deepcopy(stored).float()  # converted once, as before
    compute_in(stored, torch.float32)
    assert storage_dtype(stored) == half
    assert isinstance(stored.text_model.embeddings.token_embedding, CastEmbedding)
    assert isinstance(stored.text_projection, CastLinear)
    with torch.no_grad():
        got = text_outputs([stored], [0], "a red square, 3 cats")
        want = text_outputs([reference], [0], "a red square, 3 cats")
    for x, y in zip(got, want, strict=True):
        assert x.dtype == torch.float32 and torch.equal(x, y)
    uncast(stored)
    assert type(stored.text_projection) is torch.nn.Linear


def test_fp32_models_are_left_alone() -> None:
    encoder = build_tiny("sd1").text_encoders[0]
    compute_in(encoder, torch.float32)
    assert all(not type(m).__name__.startswith("Cast") for m in encoder.modules())


def test_fp16_file_keeps_text_in_fp16_and_lora_patches_it_in_fp32(tmp_path: Path) -> None:
    models = build_tiny("sd1")
    path = save_single_file(
        tmp_path / "m.safetensors", models.unet, models.vae, models.text_encoders, "sd1", dtype=torch.float16
    )
    loaded = load_checkpoint(path, dtype=torch.float32)
    encoder = loaded.text_encoders[0]
    assert storage_dtype(encoder) == torch.float16 and storage_dtype(loaded.unet) == torch.float32
    name = next(n for n, _ in encoder.named_parameters() if n.endswith("layers.0.self_attn.q_proj.weight"))
    weight = encoder.get_parameter(name)
    original = weight.detach().clone()
    generator = torch.Generator().manual_seed(3)
    up = torch.randn(weight.shape[0], 2, generator=generator)
    down = torch.randn(2, weight.shape[1], generator=generator)
    lora = ("lora", (up, down, 1.0, None, None))  # alpha 1 over rank 2: scale 0.5
    with patched_parameters({name: weight}, {name: [(0.01, lora, 1.0, None, None)]}):
        expected = (original.float() + 0.5 * 0.01 * (up @ down)).half()  # added in fp32, rounded once
        assert weight.dtype == torch.float16 and torch.equal(weight, expected)
    assert torch.equal(weight, original)
    clip = CLIP((encoder,), tuple(loaded.pad_ids), loaded.family)
    plain = clip.encode_from_tokens(clip.tokenize("a red square"))
    key = next(k for k in clip.get_key_patches() if k.endswith("layers.0.self_attn.q_proj.weight"))
    patched = clip.clone()
    patched.add_patches({key: lora}, 0.01)
    with_lora = patched.encode_from_tokens(patched.tokenize("a red square"))
    assert plain.dtype == torch.float32 and not torch.equal(plain, with_lora)
