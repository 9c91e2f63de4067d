"""Call one node through the registry, validation and executor with tensors as inputs.

`call(executor, "LatentFlip", samples={...}, flip_method="x-axis: vertically")` builds a prompt in which
every non-literal input comes from a `TestValue` node and every output goes into a `TestCapture` node,
runs it, and returns the node's outputs as a tuple (a list per output of a list node).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from engine.executor import Executor
from engine.graph import describe_errors, validate_prompt
from engine.native import Input, Node, Socket, Ui

AnyValue = Annotated[Any, Socket("*")]
_VALUES: dict[str, Any] = {}
_CAPTURED: dict[str, list[Any]] = {}
LITERALS = (int, float, str, bool)


class TestValue(Node):
    """Outputs a value a test put in the harness's store."""

    category = "testing"

    def run(self, key: Annotated[str, Input("Store key.")]) -> AnyValue:
        return _VALUES[key]


class TestCapture(Node):
    """Keeps the value it receives for the test (one entry per list item)."""

    category = "testing"
    output_node = True

    def run(self, value: Annotated[AnyValue, Input("Any value.")], key: Annotated[str, Input("Key.")]) -> Ui:
        _CAPTURED.setdefault(key, []).append(value)
        return Ui()


def call(executor: Executor, node: str, **inputs: Any) -> tuple[Any, ...]:
    """Run `node` once with these inputs; literals are widget values, anything else is linked in."""
    registry = executor.registry
    for test_node in (TestValue, TestCapture):
        if test_node.__name__ not in registry:
            registry.register(test_node)
    spec = registry.get(node)
    assert spec is not None, f"{node} is not registered"
    prompt: dict[str, Any] = {}
    literal: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, LITERALS) and not _is_link_type(spec, name):
            literal[name] = value
            continue
        key = uuid.uuid4().hex
        _VALUES[key] = value
        prompt[f"in_{name}"] = {"class_type": "TestValue", "inputs": {"key": key}}
        literal[name] = [f"in_{name}", 0]
    prompt["node"] = {"class_type": node, "inputs": literal}
    keys = []
    for index in range(len(spec.outputs)):
        keys.append(uuid.uuid4().hex)
        prompt[f"out_{index}"] = {
            "class_type": "TestCapture",
            "inputs": {"value": ["node", index], "key": keys[-1]},
        }
    checked = validate_prompt(registry, prompt)
    assert checked.ok, describe_errors(checked)
    result = executor.execute(checked.prompt, "test", checked.outputs)
    assert result.status == "success", result.error
    if not keys:
        return (result.outputs.get("node"),)
    return tuple(
        _collect(_CAPTURED.pop(key, []), output.is_list)
        for key, output in zip(keys, spec.outputs, strict=True)
    )


def ui(executor: Executor, node: str, **inputs: Any) -> dict[str, Any]:
    """Run an output node; returns what it shows (its `ui` dict)."""
    return call(executor, node, **inputs)[0]


def _collect(values: list[Any], is_list: bool) -> Any:
    return values if is_list else values[0]


def _is_link_type(spec: Any, name: str) -> bool:
    item = spec.input(name)
    return item is not None and item.type not in ("INT", "FLOAT", "STRING", "BOOLEAN", "COMBO")
