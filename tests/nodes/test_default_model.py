"""The shipped default model through Loom's normal nodes: it loads like any checkpoint, the default
workflow makes a 64×64 PNG, and fixed prompts give the colour and position they ask for."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine import folders
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from training.classify import detect

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WORKFLOW = ROOT / "workflows" / "default_text_to_image.json"


@pytest.fixture
def shipped(loom_folders: Folders) -> Folders:
    loom_folders.models = Folders.under(ROOT, models_base=folders.PROJECT_ROOT / "models").models
    return loom_folders


def generate(executor: Executor, output: Folders, text: str, seed: int) -> np.ndarray:
    prompt = json.loads(DEFAULT_WORKFLOW.read_text())
    prompt["6"]["inputs"]["text"] = text
    prompt["3"]["inputs"]["seed"] = seed
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "p", checked.outputs)
    assert result.status == "success", result.error
    image = result.outputs["9"]["images"][0]
    return np.asarray(Image.open(output.output / image["subfolder"] / image["filename"]).convert("RGB"))


def test_default_workflow_makes_a_64px_image_the_same_every_time(
    executor: Executor, shipped: Folders
) -> None:
    first = generate(executor, shipped, "a large red circle on the left", 42)
    assert first.shape == (64, 64, 3)
    executor.cache.clear()
    assert np.array_equal(first, generate(executor, shipped, "a large red circle on the left", 42))


@pytest.mark.parametrize(
    ("text", "colour", "position"),
    [
        ("a large red circle on the left", "red", "on the left"),
        ("a small blue square at the top", "blue", "at the top"),
        ("a yellow triangle on the right", "yellow", "on the right"),
        ("a large green square at the bottom", "green", "at the bottom"),
        ("a purple circle in the center", "purple", "in the center"),
    ],
)
def test_prompts_get_their_colour_and_position(
    executor: Executor, shipped: Folders, text: str, colour: str, position: str
) -> None:
    found = detect(generate(executor, shipped, text, seed=1), max_objects=1)
    assert found, "no object drawn"
    assert (found[0].obj.colour, found[0].obj.position) == (colour, position)


def test_the_evaluators_batched_sampler_matches_the_nodes(executor: Executor, shipped: Folders) -> None:
    """The evaluator samples many prompts in one batch; its numbers must hold for the normal nodes."""
    from engine.models.checkpoint import load_checkpoint
    from training.generate import TextToImage

    through_nodes = generate(executor, shipped, "a small orange triangle at the bottom", 7).astype(int)
    batched: Any = TextToImage(load_checkpoint(shipped.model_path("checkpoints", "loom_default.safetensors")))
    image = batched(["a small orange triangle at the bottom"], [7])[0]
    assert np.abs(image.astype(int) - through_nodes).max() <= 2  # rounding vs SaveImage's truncation


def test_latent_previews_look_like_the_final_image(executor: Executor, shipped: Folders) -> None:
    """The shipped model carries its own latent → RGB projection (training/train_vae.py: latent_rgb)."""
    import io

    previews: list[bytes] = []
    prompt = json.loads(DEFAULT_WORKFLOW.read_text())
    prompt["6"]["inputs"]["text"] = "a large blue square at the top"
    checked = validate_prompt(executor.registry, prompt)

    def keep_previews(event: str, data: dict[str, Any]) -> None:
        if event == "preview_image":
            previews.append(data["image"])

    result = executor.execute(checked.prompt, "p", checked.outputs, listener=keep_previews)
    image = result.outputs["9"]["images"][0]
    final = Image.open(shipped.output / image["subfolder"] / image["filename"]).convert("RGB")
    last_preview = Image.open(io.BytesIO(previews[-1])).convert("RGB").resize((8, 8), Image.Resampling.BOX)
    expected = np.asarray(final.resize((8, 8), Image.Resampling.BOX), dtype=float)
    assert np.abs(np.asarray(last_preview, dtype=float) - expected).mean() < 25
