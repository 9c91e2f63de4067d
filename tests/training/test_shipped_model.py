"""The shipped default model loads like an SD1.x checkpoint, stays small, and still draws what it is told."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from engine.models.checkpoint import load_checkpoint
from training.classify import detect, matches
from training.data import parse_prompt
from training.generate import TextToImage

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "checkpoints" / "loom_default.safetensors"
PROMPTS = [
    "a red circle on the left",
    "a large blue square on the right",
    "a small green triangle at the top",
    "a yellow square at the bottom",
    "a purple circle in the center",
    "a large orange triangle on the left",
]


@pytest.fixture(scope="module")
def t2i() -> TextToImage:
    return TextToImage(load_checkpoint(SHIPPED))


def test_file_is_small_sd1_eps_and_loads_fast() -> None:
    assert SHIPPED.stat().st_size < 20_000_000
    load_checkpoint(SHIPPED)  # the first load also imports the model libraries
    start = time.perf_counter()
    checkpoint = load_checkpoint(SHIPPED)
    assert time.perf_counter() - start < 2.0  # under 1 s on an idle machine; CI shares its cores
    assert checkpoint.family == "sd1" and checkpoint.prediction_type == "eps"
    assert checkpoint.vae_scaling_factor == 0.18215
    preview = json.loads(checkpoint.metadata["loom.latent_rgb"])
    assert np.array(preview["factors"]).shape == (4, 3) and len(preview["bias"]) == 3


def test_same_prompt_and_seed_give_the_same_image(t2i: TextToImage) -> None:
    np.testing.assert_array_equal(t2i(["a red circle"], [7]), t2i(["a red circle"], [7]))


def test_draws_the_prompted_objects(t2i: TextToImage) -> None:
    images = t2i(PROMPTS, list(range(len(PROMPTS))))
    for prompt, image in zip(PROMPTS, images, strict=True):
        found = detect(image, max_objects=1)
        assert found, prompt
        assert all(matches(found[0].obj, parse_prompt(prompt)[0]).values()), (prompt, found[0].obj)
