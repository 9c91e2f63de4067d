"""The math of SAG, PAG, HyperTile and PerpNeg on small tensors, against values worked out by hand from
the formulas in ComfyUI's nodes_sag.py, nodes_pag.py, nodes_hypertile.py and nodes_perpneg.py."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.diffusion.unet_hooks import optimized_attention
from nodes.model_patches.attention_guidance import (
    _pag_post_cfg,
    attention_grid,
    attention_with_probabilities,
    blur_where_attended,
    gaussian_blur,
    identity_attention,
)
from nodes.model_patches.hypertile import random_divisor, tile_tokens, untile_tokens


def test_gaussian_blur_of_a_point_is_the_normalised_kernel() -> None:
    image = torch.zeros(1, 1, 11, 11)
    image[0, 0, 5, 5] = 1.0
    blurred = gaussian_blur(image, 9, 2.0)
    # 1-D weights exp(-x^2 / (2 sigma^2)) at x = -4..4, normalised; the 2-D kernel is their outer product.
    weights = torch.tensor([math.exp(-(x**2) / 8) for x in range(-4, 5)])
    weights /= weights.sum()
    assert torch.allclose(blurred[0, 0, 1:10, 1:10], torch.outer(weights, weights), atol=1e-7)
    assert math.isclose(float(blurred.sum()), 1.0, rel_tol=1e-6)
    # Reflected borders keep a constant image constant; sigma 0 is no blur.
    flat = torch.full((1, 2, 6, 6), 3.0)
    assert torch.allclose(gaussian_blur(flat, 9, 1.5), flat)
    assert torch.equal(gaussian_blur(image, 9, 0.0), image)


def test_attention_with_probabilities_matches_attention() -> None:
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 6, 8) for _ in range(3))
    out, probs = attention_with_probabilities(q, k, v, heads=2)
    assert torch.allclose(out, optimized_attention(q, k, v, 2), atol=1e-6)
    assert probs.shape == (4, 6, 6) and torch.allclose(probs.sum(-1), torch.ones(4, 6))
    # Batch-major: slice 1 is batch 0, head 1 (q's channels 4..7).
    head = q[0, :, 4:] @ k[0, :, 4:].T / 2.0
    assert torch.allclose(probs[1], head.softmax(-1), atol=1e-6)


def test_attention_grid_follows_the_latent_aspect() -> None:
    assert attention_grid(16, 8, 8) == (4, 4)
    assert attention_grid(32, 8, 16) == (4, 8)  # round(sqrt(0.5 * 32)) = 4 rows
    assert attention_grid(32, 16, 8) == (8, 4)
    with pytest.raises(ValueError, match="SelfAttentionGuidance"):
        attention_grid(1, 8, 8)


def test_sag_blurs_only_where_attention_gathers() -> None:
    x0 = torch.zeros(1, 1, 8, 8)
    x0[0, 0, 1, 1] = 1.0
    # Uniform attention: every key gets a column sum of exactly 1, not above the threshold: no blur.
    uniform = torch.full((2, 16, 16), 1 / 16)
    assert torch.equal(blur_where_attended(x0, uniform, 2.0), x0)
    # Every query attends key 0 (grid cell (0, 0) of 4x4, latent pixels (0..1, 0..1)): only there blurred.
    gathered = torch.zeros(2, 16, 16)
    gathered[:, :, 0] = 1.0
    out = blur_where_attended(x0, gathered, 2.0)
    blurred = gaussian_blur(x0, 9, 2.0)
    assert torch.allclose(out[..., :2, :2], blurred[..., :2, :2])
    outside = torch.ones(8, 8, dtype=torch.bool)
    outside[:2, :2] = False
    assert torch.equal(out[0, 0][outside], x0[0, 0][outside])


class _StubModel:
    """A model whose prediction is 2 with the middle attn1 replaced by identity, else 1."""

    diffusion_model = type("Unet", (), {"config": None})()

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def apply_model(self, x: Any, t: Any, **c: Any) -> Any:
        table = c["transformer_options"].get("patches_replace", {}).get("attn1", {})
        self.seen.append(dict(table))
        return torch.full_like(x, 2.0 if table.get(("middle", 0)) is identity_attention else 1.0)


def test_pag_post_cfg_formula() -> None:
    model = _StubModel()
    x = torch.zeros(1, 4, 2, 2)
    cond = [{"cross_attn": torch.zeros(1, 3, 5), "uuid": 0}]
    args = {
        "denoised": torch.full_like(x, 0.5),
        "cond_denoised": torch.full_like(x, 3.0),
        "cond": cond,
        "model": model,
        "sigma": torch.tensor([1.0]),
        "model_options": {"transformer_options": {}},
        "input": x,
    }
    # cfg_result + (cond_pred - perturbed) * scale = 0.5 + (3 - 2) * 1.5
    assert torch.allclose(_pag_post_cfg(1.5)(args), torch.full_like(x, 2.0))
    assert model.seen == [{("middle", 0): identity_attention}]
    assert args["model_options"] == {"transformer_options": {}}  # the caller's options are untouched
    assert _pag_post_cfg(0.0)(args) is args["denoised"] and len(model.seen) == 1


def test_hypertile_tiles_are_spatial_and_round_trip() -> None:
    tokens = torch.arange(16.0).view(1, 16, 1)  # a 4x4 grid, row by row
    tiles = tile_tokens(tokens, 2, 2, 4, 4)
    assert tiles.shape == (4, 4, 1)
    assert tiles[0, :, 0].tolist() == [0, 1, 4, 5] and tiles[1, :, 0].tolist() == [2, 3, 6, 7]
    assert tiles[3, :, 0].tolist() == [10, 11, 14, 15]
    x = torch.randn(2, 54, 5)
    assert torch.equal(untile_tokens(tile_tokens(x, 2, 3, 6, 9), 2, 3, 6, 9), x)


def test_random_divisor_candidates() -> None:
    # 8 with tiles of at least 4: divisors 4 and 8 → 2 or 1 tiles; the draw is from [0, 1): always 2.
    assert all(random_divisor(8, 4, 2) == 2 for _ in range(5))
    assert random_divisor(8, 4, 1) == 2 and random_divisor(3, 8, 4) == 1
    # 16 with tiles of at least 2: 8, 4 or 2 tiles among 3 options, index from [0, 2): 8 or 4, and the
    # same sequence for the same global seed.
    torch.manual_seed(3)
    first = [random_divisor(16, 2, 3) for _ in range(20)]
    torch.manual_seed(3)
    assert [random_divisor(16, 2, 3) for _ in range(20)] == first
    assert set(first) == {8, 4}


def test_perp_neg_removes_the_parallel_part() -> None:
    from engine.diffusion.custom_guiders import perp_neg

    empty = torch.zeros(1, 2)
    pos = torch.tensor([[1.0, 0.0]])
    neg = torch.tensor([[1.0, 1.0]])
    # neg - empty = (1, 1); its part along pos = (1, 0) is removed: perp = (0, 1).
    # empty + cfg * (pos - perp * neg_scale) = 3 * ((1, 0) - 0.5 * (0, 1)) = (3, -1.5)
    assert torch.allclose(perp_neg(None, pos, neg, empty, 0.5, 3.0), torch.tensor([[3.0, -1.5]]))
