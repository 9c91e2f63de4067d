"""The caption grammar round-trips and the classifier is exact on rendered ground truth."""

from __future__ import annotations

import random

import pytest

from training.classify import detect
from training.data import COLOURS, POSITIONS, SHAPES, SIZES, Obj, caption, parse_prompt, prompt_of, render
from training.eval import main as eval_main


def test_every_concrete_object_is_classified_exactly() -> None:
    rng = random.Random(0)
    for shape in SHAPES:
        for colour in COLOURS:
            for size in SIZES:
                for position in POSITIONS:
                    obj = Obj(shape, colour, size, position)
                    found = detect(render([obj], rng, jitter=0.06), max_objects=1)
                    assert [d.obj for d in found] == [obj]


def test_captions_parse_back_and_omit_attributes() -> None:
    rng = random.Random(1)
    scene = [Obj("square", "red", "large", "on the left"), Obj("circle", "blue", "small", "at the top")]
    assert parse_prompt(prompt_of(scene)) == scene
    assert caption(scene, rng, {"colour": 0.0, "size": 0.0, "position": 0.0}) == "a square and a circle"
    assert parse_prompt("a large purple triangle at the bottom") == [
        Obj("triangle", "purple", "large", "at the bottom")
    ]
    with pytest.raises(ValueError, match="grammar"):
        parse_prompt("a red dog")


def test_evaluator_validates_on_ground_truth() -> None:
    results = eval_main(["--validate", "--count", "150", "--pairs", "50"])
    names = ["found", "found_unplaced", "shape", "colour", "position", "size", "binding"]
    expected = dict.fromkeys([*names, "binding_colour_position"], 1.0)
    assert results["accuracy"] == pytest.approx(expected)
