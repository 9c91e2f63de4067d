"""The pack through Loom's `loom_pack` fixture: real workflows, validated and executed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image as PILImage

from engine.graph import validate_prompt
from engine.testing import PackHarness

PACK = Path(__file__).resolve().parent.parent


@pytest.fixture
def pack(loom_pack: Any) -> PackHarness:
    harness: PackHarness = loom_pack(PACK)
    return harness


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def test_text_nodes_chain(pack: PackHarness) -> None:
    prompt = {
        "1": node("PrimitiveString", value="a cat"),
        "2": node("PrimitiveString", value="oil painting"),
        "3": node("TextJoin", first=["1", 0], second=["2", 0], separator=" | "),
        "4": node("TextReplace", text=["3", 0], find=r"\bcat\b", replace="dog", regex=True),
        "5": node("ShowText", text=["4", 0]),
    }
    assert pack.run(prompt).outputs["5"] == {"text": ["a dog | oil painting"]}


def test_number_format(pack: PackHarness) -> None:
    prompt = {
        "1": node("PrimitiveFloat", value=3.14159),
        "2": node("NumberFormat", value=["1", 0], spec=".3f"),
        "3": node("ShowText", text=["2", 0]),
    }
    assert pack.run(prompt).outputs["3"] == {"text": ["3.142"]}


def test_bad_regex_and_colour_fail_validation(pack: PackHarness) -> None:
    bad_regex = {
        "1": node("TextReplace", text="x", find="(", regex=True),
        "2": node("ShowText", text=["1", 0]),
    }
    assert not validate_prompt(pack.registry, bad_regex).ok
    bad_colour = {"1": node("ImageSolidColor", color="red"), "2": node("PreviewImage", images=["1", 0])}
    assert not validate_prompt(pack.registry, bad_colour).ok


def test_lazy_switch_runs_only_the_chosen_branch(pack: PackHarness) -> None:
    prompt = {
        "1": node("PrimitiveString", value="yes"),
        "2": node("PrimitiveString", value="no"),
        "3": node("LazySwitch", condition=False, on_true=["1", 0], on_false=["2", 0]),
        "4": node("ShowText", text=["3", 0]),
    }
    result = pack.run(prompt)
    assert result.outputs["4"] == {"text": ["no"]}
    assert "1" not in result.executed


def test_image_helpers(pack: PackHarness) -> None:
    prompt = {
        "1": node("ImageSolidColor", width=70, height=33, color="#ff8000"),
        "2": node("ImageCropToMultiple", image=["1", 0], multiple=8),
        "3": node("PreviewImage", images=["2", 0]),
    }
    result = pack.run(prompt)
    assert result.status == "success"
    saved = result.outputs["3"]["images"][0]
    with PILImage.open(pack.folders.temp / saved["subfolder"] / saved["filename"]) as picture:
        assert picture.size == (64, 32)
        assert picture.getpixel((0, 0))[:3] == (255, 128, 0)
