"""The executor through its public API: events, caching, errors, interrupt, list semantics."""

from __future__ import annotations

from typing import Any

import pytest

from engine.cache import OutputCache
from engine.executor import ExecutionResult, Executor
from engine.graph import validate_prompt
from engine.registry import NodeRegistry
from tests.conftest import Recorder
from tests.engine import counting_nodes
from tests.engine.counting_nodes import CALLS


def run(
    executor: Executor, prompt: dict[str, Any], listener: Any = None, prompt_id: str = "p"
) -> ExecutionResult:
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    return executor.execute(checked.prompt, prompt_id, checked.outputs, listener=listener)


def chain(a: float = 1.0, factor: float = 2.0) -> dict[str, Any]:
    return {
        "1": {"class_type": "AddNumbers", "inputs": {"a": a, "b": 1.0}},
        "2": {"class_type": "Scale", "inputs": {"value": ["1", 0], "factor": factor}},
        "3": {"class_type": "ShowNumber", "inputs": {"value": ["2", 0]}},
    }


def called() -> list[str]:
    return [name for name, _ in CALLS]


def test_comfy_and_native_nodes_run_side_by_side(executor: Executor, recorder: Recorder) -> None:
    result = run(executor, chain(a=2.0, factor=3.0), recorder)
    assert result.status == "success"
    assert result.outputs == {"3": {"numbers": [9.0]}}
    assert called() == ["AddNumbers", "Scale", "ShowNumber"]
    assert recorder.names() == [
        "execution_start", "execution_cached",
        "executing", "executing", "executing", "executed",
        "execution_success", "executing",
    ]  # fmt: skip
    assert [d["node"] for d in recorder.of("executing")] == ["1", "2", "3", None]
    assert recorder.of("executed")[0] == {
        "node": "3",
        "display_node": "3",
        "output": {"numbers": [9.0]},
        "prompt_id": "p",
    }


def test_identical_rerun_executes_nothing_but_resends_outputs(executor: Executor, recorder: Recorder) -> None:
    run(executor, chain())
    CALLS.clear()
    result = run(executor, chain(), recorder, prompt_id="again")
    assert called() == [] and result.executed == []
    assert recorder.of("execution_cached")[0]["nodes"] == ["1", "2", "3"]
    assert recorder.of("executed")[0]["output"] == {"numbers": [4.0]}
    assert result.outputs == {"3": {"numbers": [4.0]}}


def test_changing_one_literal_reruns_only_it_and_descendants(executor: Executor, recorder: Recorder) -> None:
    run(executor, chain())
    CALLS.clear()
    result = run(executor, chain(factor=5.0), recorder)
    assert called() == ["Scale", "ShowNumber"]
    assert recorder.of("execution_cached")[0]["nodes"] == ["1"]
    assert result.outputs["3"] == {"numbers": [10.0]}


def test_identical_subgraphs_run_once(executor: Executor) -> None:
    prompt = {
        "1": {"class_type": "AddNumbers", "inputs": {"a": 1.0, "b": 1.0}},
        "2": {"class_type": "AddNumbers", "inputs": {"a": 1.0, "b": 1.0}},
        "3": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
        "4": {"class_type": "ShowNumber", "inputs": {"value": ["2", 0]}},
    }
    result = run(executor, prompt)
    assert called() == ["AddNumbers", "ShowNumber"]
    assert result.outputs == {"3": {"numbers": [2.0]}, "4": {"numbers": [2.0]}}


def test_nan_fingerprint_reruns_every_time(executor: Executor) -> None:
    prompt = {
        "1": {"class_type": "Volatile", "inputs": {"value": 3.0}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }
    run(executor, prompt)
    run(executor, prompt)
    assert called().count("Volatile") == 2


def test_raising_node_stops_prompt_and_keeps_earlier_outputs(executor: Executor, recorder: Recorder) -> None:
    prompt = {
        "1": {"class_type": "AddNumbers", "inputs": {"a": 1.0, "b": 1.0}},
        "2": {"class_type": "Explode", "inputs": {"value": ["1", 0]}},
        "3": {"class_type": "ShowNumber", "inputs": {"value": ["2", 0]}},
    }
    result = run(executor, prompt, recorder)
    assert result.status == "error"
    error = recorder.of("execution_error")[0]
    assert error["node_id"] == "2" and error["node_type"] == "Explode"
    assert error["exception_type"] == "ValueError" and error["exception_message"] == "cannot handle 2.0"
    assert error["current_inputs"] == {"value": [2.0]} and error["executed"] == ["1"]
    assert any("cannot handle" in line or "raise" in line for line in error["traceback"])
    assert recorder.names()[-2:] == ["execution_error", "executing"]
    CALLS.clear()
    result = run(executor, chain(a=1.0, factor=2.0))  # the engine is unharmed, node 1 still cached
    assert result.status == "success" and called() == ["Scale", "ShowNumber"]


def test_interrupt_stops_cleanly_and_next_prompt_runs(executor: Executor, recorder: Recorder) -> None:
    counting_nodes.ON_STEP_2[:] = [executor.interrupt]
    prompt = {
        "1": {"class_type": "SlowSteps", "inputs": {"steps": 10}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }
    try:
        result = run(executor, prompt, recorder)
    finally:
        counting_nodes.ON_STEP_2.clear()
    assert result.status == "interrupted"
    assert called() == [("SlowSteps")] * 3
    assert [d["value"] for d in recorder.of("progress")] == [1, 2]
    interrupted = recorder.of("execution_interrupted")[0]
    assert interrupted["node_id"] == "1" and interrupted["node_type"] == "SlowSteps"
    assert run(executor, prompt).status == "success"


def test_list_outputs_fan_out_and_merge(executor: Executor) -> None:
    prompt = {
        "1": {"class_type": "ListMaker", "inputs": {"count": 4}},
        "2": {"class_type": "Scale", "inputs": {"value": ["1", 0], "factor": 10.0}},
        "3": {"class_type": "ShowNumber", "inputs": {"value": ["2", 0]}},
        "4": {"class_type": "SumList", "inputs": {"values": ["2", 0]}},
        "5": {"class_type": "ShowNumber", "inputs": {"value": ["4", 0]}},
    }
    result = run(executor, prompt)
    assert result.outputs["3"] == {"numbers": [0.0, 10.0, 20.0, 30.0]}
    assert result.outputs["5"] == {"numbers": [60.0]}


@pytest.mark.parametrize("mode", ["none", "lru"])
def test_cache_modes(registry: NodeRegistry, loom_folders: Any, mode: str) -> None:
    executor = Executor(registry, OutputCache(mode, lru_size=2))  # type: ignore[arg-type]
    run(executor, chain())
    CALLS.clear()
    run(executor, chain())
    # LRU of 2 keeps the two most recent entries (nodes 2 and 3); node 1 is then not needed at all,
    # because ComfyUI never runs the ancestors of a cached node.
    expected = ["AddNumbers", "Scale", "ShowNumber"] if mode == "none" else []
    assert called() == expected
    assert len(executor.cache) == (0 if mode == "none" else 2)


def test_default_cache_keeps_only_what_latest_prompt_used(executor: Executor) -> None:
    run(executor, chain(a=1.0))
    run(executor, chain(a=5.0))
    CALLS.clear()
    run(executor, chain(a=1.0))
    assert called() == ["AddNumbers", "Scale", "ShowNumber"]


def test_byte_budget_evicts_large_values(registry: NodeRegistry, loom_folders: Any) -> None:
    executor = Executor(registry, OutputCache(max_bytes=60_000))
    prompt = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    run(executor, prompt)
    assert executor.cache.bytes <= 60_000 and len(executor.cache) == 2  # one 48 KiB image fits


def test_node_instances_are_reused_per_node_id(executor: Executor) -> None:
    run(executor, chain(a=1.0))
    first = executor.instance("2", executor.registry.get("Scale"))  # type: ignore[arg-type]
    run(executor, chain(a=7.0))
    assert executor.instance("2", executor.registry.get("Scale")) is first  # type: ignore[arg-type]


def test_execute_works_when_called_inside_a_running_event_loop(executor: Executor) -> None:
    """As from a notebook or a test driving a browser with Playwright's sync API."""
    import asyncio

    async def inside() -> ExecutionResult:
        return run(executor, chain(a=2.0, factor=3.0))

    assert asyncio.run(inside()).outputs == {"3": {"numbers": [9.0]}}
