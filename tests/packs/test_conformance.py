"""ComfyUI execution semantics, checked with a pack written in ComfyUI's convention."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from engine.graph import validate_prompt
from engine.testing import PackHarness

PACK = Path(__file__).parent / "conformance_pack"


@pytest.fixture
def pack(loom_pack: Any) -> PackHarness:
    harness: PackHarness = loom_pack(PACK)
    return harness


def node(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"class_type": class_type, "inputs": inputs}


def shown(result: Any, node_id: str) -> list[Any]:
    return list(result.outputs[node_id]["values"])


def lazy_prompt(t: float) -> dict[str, Any]:
    return {
        "1": node("StubFloat", value=10.0),
        "2": node("StubFloat", value=20.0),
        "3": node("TestLazyMix", a=["1", 0], b=["2", 0], t=t),
        "4": node("TestShow", value=["3", 0]),
    }


@pytest.mark.parametrize(("t", "ran", "value"), [(0.0, "1", 10.0), (1.0, "2", 20.0), (0.5, "12", 15.0)])
def test_lazy_inputs_compute_only_the_branch_asked_for(
    pack: PackHarness, t: float, ran: str, value: float
) -> None:
    result = pack.run(lazy_prompt(t))
    assert shown(result, "4") == [value]
    assert sorted(n for n in result.executed if n in "12") == list(ran)


def test_lazy_node_is_staged_again_once_its_inputs_exist(pack: PackHarness) -> None:
    result = pack.run(lazy_prompt(0.5))
    assert [d["node"] for d in pack.of("executing")] == ["3", "1", "2", "3", "4", None]
    assert result.executed == ["1", "2", "3", "4"]


def test_custom_is_changed_controls_caching(pack: PackHarness) -> None:
    prompt = {
        "1": node("StubFloat", value=1.0),
        "2": node("TestCustomIsChanged", value=["1", 0], should_change=False),
        "3": node("TestShow", value=["2", 0]),
    }
    assert "2" in pack.run(prompt).executed
    assert pack.run(prompt).executed == []
    prompt["2"]["inputs"]["should_change"] = True
    assert "2" in pack.run(prompt).executed
    assert pack.run(prompt).executed == ["2", "3"]


def test_list_fan_out_and_merge(pack: PackHarness) -> None:
    prompt = {
        "1": node("TestMakeList", value1=1.0, value2=2.0, value3=3.0),
        "2": node("TestScale", value=["1", 0], factor=10.0),
        "3": node("TestShow", value=["2", 0]),
        "4": node("TestSumList", values=["2", 0]),
        "5": node("TestShow", value=["4", 0]),
    }
    result = pack.run(prompt)
    assert shown(result, "3") == [10.0, 20.0, 30.0]
    assert shown(result, "5") == [60.0]


def test_undeclared_inputs_reach_kwargs(pack: PackHarness) -> None:
    prompt = {
        "1": node("StubFloat", value=2.0),
        "2": node("TestVariadicSum", start=1.0, extra=["1", 0], another=4.0),
        "3": node("TestShow", value=["2", 0]),
    }
    assert shown(pack.run(prompt), "3") == [7.0]


@pytest.mark.parametrize("iterations", [1, 2, 3, 4])
def test_for_loop_built_by_expansion(pack: PackHarness, iterations: int) -> None:
    prompt = {
        "1": node("StubFloat", value=1.0),
        "2": node("TestForLoopOpen", remaining=iterations, value=["1", 0]),
        "3": node("TestScale", value=["2", 2], factor=0.5),
        "4": node("TestForLoopClose", flow_control=["2", 0], value=["3", 0]),
        "5": node("TestShow", value=["4", 0]),
    }
    result = pack.run(prompt)
    assert shown(result, "5") == [0.5**iterations]
    copies = [d for d in pack.of("executing") if d["node"] and d["node"] not in prompt]
    assert {d["display_node"] for d in copies} <= {"2", "3", "4"}
    assert all(n.startswith("4.") for n in (d["node"] for d in copies))


def test_expansion_per_list_item_mixes_links_and_values(pack: PackHarness) -> None:
    prompt = {
        "1": node("TestMakeList", value1=0.5, value2=2.0, value3=3.0),
        "2": node("TestDoubleByExpansion", value=["1", 0]),
        "3": node("TestShow", value=["2", 0]),
    }
    assert shown(pack.run(prompt), "3") == [0.5, 4.0, 6.0]


def test_cycle_created_by_expansion_is_a_runtime_error_on_the_expanding_node(pack: PackHarness) -> None:
    prompt = {
        "1": node("StubFloat", value=1.0),
        "2": node("TestDynamicCycle", value=["1", 0]),
        "3": node("TestShow", value=["2", 0]),
    }
    result = pack.run(prompt)
    assert result.status == "error"
    assert result.error is not None
    assert result.error["node_id"] == "2" and result.error["exception_type"] == "graph.DependencyCycleError"
    assert (
        pack.run({"1": node("StubFloat", value=2.0), "3": node("TestShow", value=["1", 0])}).status
        == "success"
    )


def blocker_prompt(block: bool, verbose: bool) -> dict[str, Any]:
    return {
        "1": node("StubFloat", value=1.0),
        "2": node("TestEquals", a=1, b=1 if block else 0),
        "3": node("TestBlocker", value=["1", 0], block=["2", 0], verbose=verbose),
        "4": node("TestScale", value=["3", 0], factor=3.0),
        "5": node("TestShow", value=["4", 0]),
    }


def test_silent_blocker_skips_consumers(pack: PackHarness) -> None:
    result = pack.run(blocker_prompt(block=True, verbose=False))
    assert result.status == "success" and "5" not in result.outputs and result.blocked == []
    assert shown(pack.run(blocker_prompt(block=False, verbose=False)), "5") == [3.0]


def test_blocker_with_message_reports_an_execution_error_once(pack: PackHarness) -> None:
    result = pack.run(blocker_prompt(block=True, verbose=True))
    assert result.status == "success" and "5" not in result.outputs
    errors = pack.of("execution_error")
    assert len(errors) == 1 and errors[0]["node_id"] == "4"
    assert errors[0]["exception_message"] == "Execution Blocked: Blocked Execution"


def test_blocker_inside_a_list_blocks_only_its_item(pack: PackHarness) -> None:
    prompt = {
        "1": node("TestMakeList", value1=1.0, value2=2.0, value3=3.0),
        "2": node("TestMakeList", value1=1, value2=2, value3=3),
        "3": node("TestEquals", a=["2", 0], b=2),
        "4": node("TestBlocker", value=["1", 0], block=["3", 0], verbose=False),
        "5": node("TestMakeList", value1=["4", 0]),
        "6": node("TestShow", value=["5", 0]),
    }
    assert shown(pack.run(prompt), "6") == [1.0, 3.0]


def test_async_nodes_run_concurrently(pack: PackHarness) -> None:
    prompt: dict[str, Any] = {"1": node("StubFloat", value=1.0)}
    for i in range(3):
        prompt[f"{10 + i}"] = node("TestSleep", value=["1", 0], seconds=1.5)
        prompt[f"{20 + i}"] = node("TestShow", value=[f"{10 + i}", 0])
    started = time.perf_counter()
    result = pack.run(prompt)
    elapsed = time.perf_counter() - started
    # One after another the sleeps take 4.5 s at least; overlapping, about 1.5 s (a busy machine adds a
    # second or so, which once failed a 2 s bound).
    assert result.status == "success" and elapsed < 4.5, elapsed
    assert all(shown(result, f"{20 + i}") == [1.0] for i in range(3))
    assert {d["node"] for d in pack.of("progress")} == {"10", "11", "12"}


def test_hidden_inputs(pack: PackHarness) -> None:
    result = pack.run({"7": node("TestHidden", value=1)}, extra_data={"extra_pnginfo": {"workflow": {}}})
    assert result.outputs["7"]["hidden"] == [
        {
            "unique_id": "7",
            "prompt_nodes": ["7"],
            "extra_pnginfo": {"workflow": {}},
            "own_class": "TestHidden",
        }
    ]


def test_progress_bar_reports_through_the_running_node(pack: PackHarness) -> None:
    prompt = {"1": node("TestProgress", steps=3), "2": node("TestShow", value=["1", 0])}
    pack.run(prompt)
    assert [(d["node"], d["value"], d["max"]) for d in pack.of("progress")] == [
        ("1", i, 3) for i in (1, 2, 3)
    ]


def test_node_instances_are_reused_across_runs(pack: PackHarness) -> None:
    prompt = {"1": node("StubFloat", value=1.0), "2": node("TestShow", value=["1", 0])}
    pack.run(prompt)
    first = pack.executor.instance("2", pack.registry.get("TestShow"))  # type: ignore[arg-type]
    prompt["1"]["inputs"]["value"] = 2.0
    pack.run(prompt)
    assert pack.executor.instance("2", pack.registry.get("TestShow")) is first  # type: ignore[arg-type]


def test_partial_execution_runs_only_the_targets_and_their_inputs(pack: PackHarness) -> None:
    prompt = {
        "1": node("StubFloat", value=1.0),
        "2": node("StubFloat", value=2.0),
        "3": node("TestShow", value=["1", 0]),
        "4": node("TestShow", value=["2", 0]),
    }
    result = pack.run(prompt, targets=["3"])
    assert sorted(result.executed) == ["1", "3"] and list(result.outputs) == ["3"]


def test_failing_node_reports_error_and_engine_keeps_running(pack: PackHarness) -> None:
    prompt = {"1": node("StubFloat", value=1.0), "2": node("TestRaise", value=["1", 0])}
    prompt["3"] = node("TestShow", value=["2", 0])
    result = pack.run(prompt)
    assert result.error is not None and result.error["node_id"] == "2"
    assert result.error["exception_message"] == "refusing 1.0"
    assert (
        pack.run({"1": node("StubFloat", value=1.0), "3": node("TestShow", value=["1", 0])}).status
        == "success"
    )


@pytest.mark.parametrize(
    ("class_type", "value", "ok"),
    [
        ("TestValidateTypes", 5.0, True),
        ("TestValidateTypes", 5, False),
        ("TestValidateTypes", "foo", False),
        ("TestValidateKwargs", 0.5, True),
        ("TestValidateKwargs", 5.0, True),
        ("TestValidateKwargs", 7.0, False),
    ],
)
def test_validate_inputs_on_literals(pack: PackHarness, class_type: str, value: Any, ok: bool) -> None:
    prompt = {"1": node(class_type, value=value), "2": node("TestShow", value=["1", 0])}
    assert validate_prompt(pack.registry, prompt).ok is ok


SOURCES = {
    "StubFloat": node("StubFloat", value=1.0),
    "StubInt": node("StubInt", value=1),
    "TestMakeList": node("TestMakeList", value1=1),
}


@pytest.mark.parametrize(
    ("class_type", "source", "ok"),
    [
        ("TestValidateTypes", "StubFloat", True),
        ("TestValidateTypes", "StubInt", False),
        ("TestValidateInputTypes", "StubInt", True),
        ("TestValidateInputTypes", "TestMakeList", False),
        ("TestValidateKwargs", "StubFloat", True),
    ],
)
def test_validate_inputs_on_links(pack: PackHarness, class_type: str, source: str, ok: bool) -> None:
    """Linked values reach VALIDATE_INPUTS as None; taking input_types turns off link type checks."""
    prompt = {
        "1": SOURCES[source],
        "2": node(class_type, value=["1", 0]),
        "3": node("TestShow", value=["2", 0]),
    }
    assert validate_prompt(pack.registry, prompt).ok is ok
