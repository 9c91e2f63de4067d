"""ComfyUI's list semantics: how one node's inputs become calls and its calls' returns become outputs.

Every input arrives as a list of items. A node is called once per item of its longest input (shorter
lists repeat their last item), or once with the whole lists when it sets INPUT_IS_LIST. An output
slot marked OUTPUT_IS_LIST contributes the items of the list it returned; other slots one item per
call. A call that receives an ExecutionBlocker is skipped and yields the blocker in every slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.cache import Entry
from engine.execution.graph_builder import ExecutionBlocker
from engine.spec import NodeSpec


@dataclass
class CallResult:
    """What one call returned: output values (links into `graph` when it expanded), UI, new nodes."""

    values: tuple[Any, ...]
    ui: dict[str, Any] | None = None
    graph: dict[str, Any] | None = None


def fan_out(spec: NodeSpec, arguments: dict[str, list[Any]]) -> list[dict[str, Any]]:
    if spec.input_is_list:
        return [arguments]
    if any(len(values) == 0 for values in arguments.values()):
        return []
    count = max((len(values) for values in arguments.values()), default=1)
    if count == 1:
        return [{name: values[0] for name, values in arguments.items()}]
    return [
        {name: values[min(i, len(values) - 1)] for name, values in arguments.items()} for i in range(count)
    ]


def blocker_in(spec: NodeSpec, call: dict[str, Any]) -> ExecutionBlocker | None:
    for value in call.values():
        if isinstance(value, ExecutionBlocker):
            return value
        if spec.input_is_list and isinstance(value, list):
            for item in value:
                if isinstance(item, ExecutionBlocker):
                    return item
    return None


def normalize(spec: NodeSpec, raw: Any) -> CallResult:
    """A node function's return value in one shape; raises TypeError for an unusable one."""
    if isinstance(raw, ExecutionBlocker):
        return CallResult((raw,) * len(spec.outputs))
    ui = graph = None
    if isinstance(raw, dict) and {"ui", "result", "expand"} & raw.keys():
        ui, graph, raw = raw.get("ui"), raw.get("expand"), raw.get("result", ())
        if graph is not None and not isinstance(graph, dict):
            raise TypeError(f"returned an expansion of type {type(graph).__name__}; expected a dict of nodes")
    if raw is None:
        raw = ()
    if not isinstance(raw, (tuple, list)):
        raise TypeError(f"returned {type(raw).__name__}; a node must return a tuple of its outputs")
    if len(raw) < len(spec.outputs):
        raise TypeError(f"returned {len(raw)} value(s) but declares {len(spec.outputs)} output(s)")
    return CallResult(tuple(raw), ui, graph)


def items(value: Any, is_list: bool) -> list[Any]:
    """The items one call contributes to an output slot."""
    if not is_list or isinstance(value, ExecutionBlocker):
        return [value]
    return list(value)


def merge(spec: NodeSpec, slots_per_call: list[list[list[Any]]], uis: list[dict[str, Any] | None]) -> Entry:
    """Concatenate each slot's items over the calls; UI lists are concatenated by key."""
    outputs: tuple[list[Any], ...] = tuple([] for _ in spec.outputs)
    for slots in slots_per_call:
        for slot, values in zip(outputs, slots, strict=False):
            slot.extend(values)
    ui: dict[str, Any] | None = None
    for shown in uis:
        if shown is not None:
            ui = ui or {}
            for name, shown_items in shown.items():
                ui.setdefault(name, []).extend(
                    shown_items if isinstance(shown_items, (list, tuple)) else [shown_items]
                )
    return Entry(outputs, ui)


def plain_slots(spec: NodeSpec, result: CallResult) -> list[list[Any]]:
    return [items(value, output.is_list) for value, output in zip(result.values, spec.outputs, strict=False)]
