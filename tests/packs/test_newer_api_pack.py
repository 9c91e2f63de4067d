"""Import patterns of Impact-Pack, WAS and KJNodes (see newer_api_pack's docstring), run through
the registry and executor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.testing import PackHarness

HERE = Path(__file__).parent


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


@pytest.fixture
def newer(loom_pack: Any) -> PackHarness:
    return loom_pack(HERE / "newer_api_pack")


def test_pack_registers_every_node(newer: PackHarness) -> None:
    pack = newer.packs[0]
    assert pack.error is None and pack.node_errors == {}
    assert sorted(pack.nodes) == ["NewerAutogrow", "NewerDynamicCombo", "NewerNoise", "NewerTaesdPreview"]


def shown(harness: PackHarness, prompt: dict[str, Any]) -> dict[str, str]:
    """Run `prompt` with a PreviewAny on each (node id, output) named in it; the texts shown."""
    previews = {f"p{k}{slot}": node("PreviewAny", source=[k, slot]) for k, slot in prompt.pop("show")}
    result = harness.run({**prompt, **previews})
    assert result.status == "success", result.error
    return {k[1:]: result.outputs[k]["text"][0] for k in previews}


def test_noise_and_guider_classes_from_custom_sampler(newer: PackHarness) -> None:
    prompt = {
        "1": node("NewerNoise", seed=3, empty=False),
        "2": node("NewerNoise", seed=3, empty=True),
        "show": [("1", 1), ("2", 1)],
    }
    assert shown(newer, prompt) == {"11": "Guider_Basic|(1, 4, 2, 2)", "21": "Guider_Basic|(1, 4, 2, 2)"}


def test_taesd_previewer_and_state_dict_helpers(newer: PackHarness) -> None:
    prompt = {"1": node("NewerTaesdPreview", size=2), "show": [("1", 0)]}
    # 2x2 latents decode to 16x16 images; the diffusers VAE key lands on the original layout.
    assert shown(newer, prompt) == {
        "10": "(1, 3, 16, 16)|(16, 16)|load_state_dict|decoder.up.3.block.0.conv1.weight"
    }


def test_dynamic_combo_passes_the_chosen_options_inputs(newer: PackHarness) -> None:
    spec = newer.registry.get("NewerDynamicCombo")
    assert spec is not None
    names = [i.name for i in spec.inputs]
    assert names == ["method", "value", "method.factor", "method.times"]  # sub-inputs are optional
    prompt = {
        "1": node("NewerDynamicCombo", method="scale", value=3.0),
        "2": node(
            "NewerDynamicCombo", method="shift", value=3.0, **{"method.factor": 2.0, "method.times": 3}
        ),
        "show": [("1", 0), ("2", 0)],
    }
    assert shown(newer, prompt) == {
        "10": "['factor', 'method']=6.0",  # the scale option's default factor, 2.0
        "20": "['factor', 'method', 'times']=9.0",
    }


def test_dynamic_combo_sub_input_keeps_the_widest_limits(newer: PackHarness) -> None:
    from engine.graph import validate_prompt

    def check(factor: float) -> Any:
        inputs = {"method": "shift", "value": 1.0, "method.factor": factor}
        prompt = {"1": node("NewerDynamicCombo", **inputs), "2": node("PreviewAny", source=["1", 0])}
        return validate_prompt(newer.registry, prompt, None)

    assert check(-8.0).ok  # the shift option's minimum, below the scale option's 0
    failed = check(-9.0)
    assert not failed.ok and "method.factor" in str(failed.node_errors)


@pytest.mark.parametrize(
    ("values", "want"),
    [
        (["shift", 0.5, 3, 2.0], {"method.factor": 0.5, "method.times": 3, "value": 2.0}),
        (["scale", 3.0, 1.5], {"method.factor": 3.0, "value": 1.5}),
    ],
)
def test_dynamic_combo_widgets_of_a_saved_workflow(newer: PackHarness, values: list[Any], want: dict) -> None:
    """The front end saves the chosen option's widgets right after the combo, before the node's next
    widget: the UI conversion reads them so, and only those (`shown_for` from the V3 schema)."""
    from engine.ui_workflow import ui_to_api

    spec = newer.registry.get("NewerDynamicCombo")
    assert spec is not None
    assert {i.name: i.shown_for for i in spec.inputs if "." in i.name} == {
        "method.factor": ("scale", "shift"),
        "method.times": ("shift",),
    }
    assert "loom_shown_for" not in str([i.object_info() for i in spec.inputs])  # never published
    workflow = {"nodes": [{"id": 1, "type": "NewerDynamicCombo", "widgets_values": values}], "links": []}
    assert ui_to_api(workflow, newer.registry)["1"]["inputs"] == {"method": values[0], **want}


def test_autogrow_template_names_and_newer_sockets(newer: PackHarness) -> None:
    spec = newer.registry.get("NewerAutogrow")
    assert spec is not None
    kinds = {i.name: i.type for i in spec.inputs}
    assert kinds["tracks"] == "TRACKS" and kinds["box"] == "BOUNDING_BOX"
    assert {"variables.a", "variables.b", "variables.c"} <= set(kinds)
    prompt = {
        "1": node("NewerAutogrow", format="mp4", **{"variables.a": 2, "variables.c": 0.5}),
        "show": [("1", 0), ("1", 1)],
    }
    assert shown(newer, prompt) == {"10": "2.5", "11": '{"names": ["a", "c"], "format": "mp4"}'}
