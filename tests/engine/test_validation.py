"""Prompt validation: every problem reported at once, in ComfyUI's shapes, never a crash."""

from __future__ import annotations

from typing import Any

from engine.graph import validate_prompt
from engine.registry import NodeRegistry


def show(value: Any) -> dict[str, Any]:
    return {"class_type": "ShowNumber", "inputs": {"value": value}}


def errors_of(result: Any, node_id: str) -> list[str]:
    return [e["type"] for e in result.node_errors[node_id]["errors"]]


def test_empty_or_missing_prompt_is_no_prompt(registry: NodeRegistry) -> None:
    for prompt in ({}, None, [], "text"):
        result = validate_prompt(registry, prompt)
        assert not result.ok and result.error["type"] == "no_prompt"


def test_missing_and_unknown_class_type_are_invalid_prompt(registry: NodeRegistry) -> None:
    missing = validate_prompt(registry, {"1": {"inputs": {}}})
    assert missing.error["type"] == "invalid_prompt" and "#1" in missing.error["details"]
    unknown = validate_prompt(registry, {"7": {"class_type": "NoSuchNode", "inputs": {}}})
    assert unknown.error["type"] == "invalid_prompt"
    assert "NoSuchNode" in unknown.error["message"] and "#7" in unknown.error["details"]


def test_prompt_without_output_nodes(registry: NodeRegistry) -> None:
    result = validate_prompt(registry, {"1": {"class_type": "AddNumbers", "inputs": {"a": 1, "b": 2}}})
    assert result.error["type"] == "prompt_no_outputs"


def test_every_input_error_type_is_reported_at_once(registry: NodeRegistry) -> None:
    prompt = {
        "1": {"class_type": "AddNumbers", "inputs": {"b": 1.0}},  # a missing
        "2": {"class_type": "AddNumbers", "inputs": {"a": -500, "b": 0}},  # below min
        "3": {"class_type": "AddNumbers", "inputs": {"a": 500, "b": 0}},  # above max
        "4": {"class_type": "AddNumbers", "inputs": {"a": "abc", "b": 0}},  # not a number
        "5": {
            "class_type": "ImageScale",
            "inputs": {
                "image": ["9", 0],
                "upscale_method": "magic",
                "width": 1,
                "height": 1,
                "crop": "disabled",
            },
        },
        "6": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0, 5]}},  # bad link shape
        "7": {"class_type": "ShowNumber", "inputs": {"value": ["8", 0]}},  # IMAGE into FLOAT
        "8": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "9": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "10": {"class_type": "EvenOnly", "inputs": {"value": 3}},
        "20": show(["1", 0]),
        "21": show(["2", 0]),
        "22": show(["3", 0]),
        "23": show(["4", 0]),
        "24": {"class_type": "SaveImage", "inputs": {"images": ["5", 0]}},
        "25": {"class_type": "Scale", "inputs": {"value": ["1", 0], "factor": 1.0}},
        "26": show(["25", 0]),
        "27": {"class_type": "ShowAnything", "inputs": {"value": ["10", 0]}},
    }
    result = validate_prompt(registry, prompt)
    assert not result.ok and result.error["type"] == "prompt_outputs_failed_validation"
    assert errors_of(result, "1") == ["required_input_missing"]
    assert errors_of(result, "2") == ["value_smaller_than_min"]
    assert errors_of(result, "3") == ["value_bigger_than_max"]
    assert errors_of(result, "4") == ["invalid_input_type"]
    assert errors_of(result, "5") == ["value_not_in_list"]
    assert errors_of(result, "6") == ["bad_linked_input"]
    assert errors_of(result, "7") == ["return_type_mismatch"]
    assert errors_of(result, "10") == ["custom_validation_failed"]
    assert "25" not in result.node_errors  # downstream of a bad node: invalid, but no errors of its own
    err = result.node_errors["2"]["errors"][0]
    assert err["extra_info"]["input_name"] == "a" and err["extra_info"]["received_value"] == -500
    assert err["message"] == "Value -500.0 smaller than min of -100.0"
    assert result.node_errors["2"]["dependent_outputs"] == ["21"]
    assert result.node_errors["2"]["class_type"] == "AddNumbers"
    mismatch = result.node_errors["7"]["errors"][0]
    assert mismatch["extra_info"]["received_type"] == "IMAGE" and mismatch["extra_info"]["linked_node"] == [
        "8",
        0,
    ]
    assert "3 is odd" in result.node_errors["10"]["errors"][0]["details"]
    assert "Value not in list" in result.error["details"]


def test_exception_in_custom_validation_is_reported(registry: NodeRegistry) -> None:
    from tests.engine.counting_nodes import EvenOnly

    prompt = {
        "1": {"class_type": "EvenOnly", "inputs": {"value": 2}},
        "3": {"class_type": "ShowAnything", "inputs": {"value": ["1", 0]}},
    }
    original = EvenOnly.VALIDATE_INPUTS
    EvenOnly.VALIDATE_INPUTS = classmethod(lambda cls, value: 1 / 0)  # type: ignore[assignment]
    registry_with_broken = NodeRegistry()
    try:
        from tests.engine import counting_nodes

        registry_with_broken.register_module(counting_nodes)
        result = validate_prompt(registry_with_broken, prompt)
    finally:
        EvenOnly.VALIDATE_INPUTS = original  # type: ignore[method-assign]
    assert errors_of(result, "1") == ["exception_during_validation"]
    assert "division by zero" in result.node_errors["1"]["errors"][0]["details"]


def test_links_to_missing_nodes_and_outputs_name_them(registry: NodeRegistry) -> None:
    prompt = {
        "1": show(["99", 0]),
        "2": show(["3", 4]),
        "3": {"class_type": "AddNumbers", "inputs": {"a": 1, "b": 2}},
    }
    result = validate_prompt(registry, prompt)
    missing_node = result.node_errors["1"]["errors"][0]
    assert missing_node["type"] == "bad_linked_input" and "#99" in missing_node["message"]
    missing_output = result.node_errors["2"]["errors"][0]
    assert missing_output["type"] == "bad_linked_input"
    assert "output 4 of node #3 (AddNumbers)" in missing_output["message"]


def test_cycle_is_an_error_naming_its_nodes(registry: NodeRegistry) -> None:
    prompt = {
        "1": {"class_type": "Scale", "inputs": {"value": ["2", 0], "factor": 1.0}},
        "2": {"class_type": "Scale", "inputs": {"value": ["1", 0], "factor": 1.0}},
        "3": show(["2", 0]),
    }
    result = validate_prompt(registry, prompt)
    assert not result.ok
    for node_id in ("1", "2"):
        error = result.node_errors[node_id]["errors"][0]
        assert error["type"] == "dependency_cycle"
        assert "#1 (Scale), #2 (Scale)" in error["details"]


def test_literals_are_coerced_like_comfyui(registry: NodeRegistry) -> None:
    prompt = {
        "1": {"class_type": "AddNumbers", "inputs": {"a": 3, "b": "2.5"}},
        "2": show(["1", 0]),
        "3": {"class_type": "EvenOnly", "inputs": {"value": "4"}},
        "5": {"class_type": "ShowAnything", "inputs": {"value": ["3", 0]}},
    }
    result = validate_prompt(registry, prompt)
    assert result.ok, result.node_errors
    assert result.prompt["1"]["inputs"] == {"a": 3.0, "b": 2.5}
    assert result.prompt["3"]["inputs"]["value"] == 4


def test_valid_outputs_still_run_when_others_fail(registry: NodeRegistry) -> None:
    prompt = {
        "1": show(5.0),
        "2": show(["3", 0]),
        "3": {"class_type": "AddNumbers", "inputs": {"a": 1000, "b": 0}},
        "4": {"class_type": "AddNumbers", "inputs": {"a": 1, "b": 1}},
    }
    result = validate_prompt(registry, prompt)
    assert result.ok and result.outputs == ["1"]
    assert list(result.node_errors) == ["3"] and result.node_errors["3"]["dependent_outputs"] == ["2"]


def test_unconnected_nodes_are_not_validated(registry: NodeRegistry) -> None:
    prompt = {"1": show(1.0), "2": {"class_type": "AddNumbers", "inputs": {}}}
    result = validate_prompt(registry, prompt)
    assert result.ok and not result.node_errors


def test_partial_execution_targets_limit_outputs(registry: NodeRegistry) -> None:
    prompt = {"1": show(1.0), "2": show(2.0)}
    assert validate_prompt(registry, prompt, targets=["2"]).outputs == ["2"]


def test_garbage_inputs_never_crash(registry: NodeRegistry) -> None:
    weird: list[Any] = [
        None,
        [],
        [None, None],
        ["1"],
        [1, 0],
        ["1", "0"],
        ["1", True],
        {"x": 1},
        1e309,
        "",
        [[], 0],
    ]
    for value in weird:
        result = validate_prompt(
            registry, {"1": show(value), "2": {"class_type": "AddNumbers", "inputs": "bad"}}
        )
        assert not result.ok or result.outputs
    result = validate_prompt(registry, {"1": {"class_type": 5, "inputs": {}}})
    assert result.error["type"] == "invalid_prompt"
