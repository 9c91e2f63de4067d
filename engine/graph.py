"""API-format prompts: validation (every problem at once, in ComfyUI's shapes) and planning.

A prompt is `{node_id: {"class_type": str, "inputs": {name: literal | [node_id, output_index]}}}`.
Only output nodes and their ancestors are checked and planned. If some outputs are valid and others
are not, the valid ones are returned for running and the others' errors are reported.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from engine.graph_report import (
    Error,
    downstream_of,
    natural_key,
    reported_errors,
    summary,
)
from engine.registry import NodeRegistry
from engine.settle import settled
from engine.spec import ANY_TYPE, COMBO, InputSpec, NodeSpec

MAX_CYCLE_MEMBERS_SHOWN = 20


@dataclass
class ValidationResult:
    ok: bool
    error: Error | None = None
    outputs: list[str] = field(default_factory=list)
    node_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The prompt with literal inputs coerced to their declared types (what the executor runs).
    prompt: dict[str, Any] = field(default_factory=dict)


def is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], (str, int))
        and isinstance(value[1], int)
        and not isinstance(value[1], bool)
    )


def links(node: dict[str, Any]) -> Iterator[tuple[str, str, int]]:
    """(input name, source node id, source output index) for every well-formed link of a node."""
    for name, value in node["inputs"].items():
        if is_link(value):
            yield name, str(value[0]), value[1]


def types_match(received: str, expected: str) -> bool:
    """ComfyUI's rule: equal, either is "*", or comma-separated unions that overlap."""
    if received == expected or ANY_TYPE in (received, expected):
        return True
    return bool({t.strip() for t in received.split(",")} & {t.strip() for t in expected.split(",")})


def prompt_error(kind: str, message: str, details: str = "") -> Error:
    return {"type": kind, "message": message, "details": details, "extra_info": {}}


def validate_prompt(
    registry: NodeRegistry, prompt: Any, targets: list[str] | None = None
) -> ValidationResult:
    if not isinstance(prompt, dict) or not prompt:
        return ValidationResult(False, prompt_error("no_prompt", "No prompt provided", "No prompt provided"))
    normalized: dict[str, Any] = {}
    for node_id, node in prompt.items():
        problem = _node_shape_error(registry, str(node_id), node)
        if problem:
            return ValidationResult(False, problem)
        normalized[str(node_id)] = {**node, "inputs": dict(node.get("inputs") or {})}

    outputs = [
        node_id
        for node_id, node in normalized.items()
        if registry.get(node["class_type"]).output_node  # type: ignore[union-attr]
        and (targets is None or node_id in targets)
    ]
    if not outputs:
        return ValidationResult(False, prompt_error("prompt_no_outputs", "Prompt has no outputs"))

    graph = nx.DiGraph()
    errors: dict[str, list[Error]] = {}
    for node_id in _ancestors_and_self(normalized, outputs):
        graph.add_node(node_id)
        problems = _validate_node(registry, normalized, node_id)
        if problems:
            errors[node_id] = problems
        for _, source, _ in links(normalized[node_id]):
            if source in normalized:
                graph.add_edge(source, node_id)
    _report_cycles(graph, normalized, errors)

    broken = downstream_of(graph, errors)
    good = [o for o in outputs if o not in broken]
    node_errors = reported_errors(graph, normalized, outputs, errors)
    if not good:
        lines = [f"{e['message']}: {e['details']}" for errs in errors.values() for e in errs]
        error = prompt_error(
            "prompt_outputs_failed_validation", "Prompt outputs failed validation", summary(lines)
        )
        return ValidationResult(False, error, [], node_errors, normalized)
    return ValidationResult(True, None, good, node_errors, normalized)


def plan(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    """The output nodes and their ancestors in a deterministic topological order."""
    needed = _ancestors_and_self(prompt, outputs)
    graph = nx.DiGraph()
    graph.add_nodes_from(needed)
    graph.add_edges_from((source, node_id) for node_id in needed for _, source, _ in links(prompt[node_id]))
    return list(nx.lexicographical_topological_sort(graph, key=natural_key))


def _node_shape_error(registry: NodeRegistry, node_id: str, node: Any) -> Error | None:
    if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
        return prompt_error(
            "invalid_prompt",
            "Cannot execute because a node is missing the class_type property.",
            f"Node ID '#{node_id}'",
        )
    if node["class_type"] not in registry:
        return prompt_error(
            "invalid_prompt",
            f"Cannot execute because node {node['class_type']} does not exist.",
            f"Node ID '#{node_id}'",
        )
    if not isinstance(node.get("inputs", {}), dict):
        return prompt_error("invalid_prompt", "A node's inputs must be an object.", f"Node ID '#{node_id}'")
    return None


def _ancestors_and_self(prompt: dict[str, Any], outputs: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    stack = list(outputs)
    while stack:
        node_id = stack.pop()
        if node_id in seen or node_id not in prompt:
            continue
        seen[node_id] = None
        stack.extend(source for _, source, _ in links(prompt[node_id]))
    return list(seen)


def _report_cycles(graph: nx.DiGraph, prompt: dict[str, Any], errors: dict[str, list[Error]]) -> None:
    for component in nx.strongly_connected_components(graph):
        if len(component) == 1 and not graph.has_edge(*(2 * tuple(component))):
            continue
        members = sorted(component, key=natural_key)
        shown = members[:MAX_CYCLE_MEMBERS_SHOWN]
        described = ", ".join(f"#{m} ({prompt[m]['class_type']})" for m in shown)
        if len(members) > len(shown):
            described += f" and {len(members) - len(shown)} more"
        error = {
            "type": "dependency_cycle",
            "message": "Dependency cycle detected",
            "details": f"nodes {described} depend on each other; remove one of their links",
            "extra_info": {"nodes": shown, "cycle_size": len(members)},
        }
        for member in members:  # one shared error: the report stays linear in the cycle's size
            errors.setdefault(member, []).append(error)


def _validate_node(registry: NodeRegistry, prompt: dict[str, Any], node_id: str) -> list[Error]:
    node = prompt[node_id]
    spec = registry.get(node["class_type"])
    assert spec is not None
    inputs = node["inputs"]
    errors: list[Error] = []
    linked_types: dict[str, str] = {}
    wants_types = spec.validate_params is not None and "input_types" in spec.validate_params

    for name, value in inputs.items():
        declared = spec.input(name)
        if declared is not None and declared.section == "hidden":
            continue
        if isinstance(value, list):
            error, received = _check_link(registry, prompt, name, value, declared, skip_types=wants_types)
            if error:
                errors.append(error)
            elif received is not None:
                linked_types[name] = received
        elif declared is not None:
            error = _check_literal(spec, declared, inputs)
            if error:
                errors.append(error)
    for declared in spec.sections("required"):
        if declared.name not in inputs:
            errors.append(_input_error("required_input_missing", "Required input is missing", declared.name))
    if not errors and spec.validate is not None:
        errors.extend(_custom_validation(spec, inputs, linked_types))
    return errors


def _input_error(kind: str, message: str, name: str, details: str | None = None, **extra: Any) -> Error:
    return {
        "type": kind,
        "message": message,
        "details": details or name,
        "extra_info": {"input_name": name, **extra},
    }


def _check_link(
    registry: NodeRegistry,
    prompt: dict[str, Any],
    name: str,
    value: list[Any],
    declared: InputSpec | None,
    skip_types: bool,
) -> tuple[Error | None, str | None]:
    config = declared.object_info() if declared else None
    if not is_link(value):
        return _input_error(
            "bad_linked_input",
            "Bad linked input, must be a length-2 list of [node_id, slot_index]",
            name,
            input_config=config,
            received_value=value,
        ), None
    source_id, slot = str(value[0]), value[1]
    if source_id not in prompt:
        return _input_error(
            "bad_linked_input",
            f"Input '{name}' is linked to node #{source_id}, which is not in the prompt",
            name,
            input_config=config,
            received_value=value,
        ), None
    source = registry.get(prompt[source_id]["class_type"])
    assert source is not None
    if not 0 <= slot < len(source.outputs):
        return _input_error(
            "bad_linked_input",
            f"Input '{name}' is linked to output {slot} of node #{source_id} ({source.id}), "
            f"which has {len(source.outputs)} output(s)",
            name,
            input_config=config,
            received_value=value,
        ), None
    received = source.outputs[slot].type
    if declared is not None and not skip_types and not types_match(received, declared.type):
        return _input_error(
            "return_type_mismatch",
            "Return type mismatch between linked nodes",
            name,
            f"{name}, received_type({received}) mismatch input_type({declared.type})",
            input_config=config,
            received_type=received,
            linked_node=value,
        ), None
    return None, received


def _coerce(type_name: str, value: Any) -> Any:
    if isinstance(value, dict) and "__value__" in value:  # ComfyUI's wrapper for list-valued widgets
        value = value["__value__"]
    if type_name == "INT":
        return int(value)
    if type_name == "FLOAT":
        number = float(value)
        if math.isnan(number):
            raise ValueError("NaN is not a number")
        return number
    if type_name == "STRING":
        return str(value)
    if type_name == "BOOLEAN":
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return bool(value)
    return value


def _check_literal(spec: NodeSpec, declared: InputSpec, inputs: dict[str, Any]) -> Error | None:
    name, value = declared.name, inputs[declared.name]
    config = declared.object_info()
    try:
        value = inputs[name] = _coerce(declared.type, value)
    except (TypeError, ValueError, OverflowError) as exc:
        return _input_error(
            "invalid_input_type",
            f"Failed to convert an input value to a {declared.type} value",
            name,
            f"{name}, {value}, {exc}",
            input_config=config,
            received_value=value,
            exception_message=str(exc),
        )
    if spec.validate is not None and (spec.validate_params is None or name in spec.validate_params):
        return None  # the node's own VALIDATE_INPUTS takes over this input's checks
    options = declared.options
    if "min" in options and _lt(value, options["min"]):
        return _input_error(
            "value_smaller_than_min",
            f"Value {value} smaller than min of {options['min']}",
            name,
            input_config=config,
            received_value=value,
        )
    if "max" in options and _lt(options["max"], value):
        return _input_error(
            "value_bigger_than_max",
            f"Value {value} bigger than max of {options['max']}",
            name,
            input_config=config,
            received_value=value,
        )
    if declared.type == COMBO and declared.choices is not None:
        choices = list(declared.choices())
        if value not in choices:
            shown = f"(list of length {len(choices)})" if len(choices) > 20 else str(choices)
            return _input_error(
                "value_not_in_list",
                "Value not in list",
                name,
                f"{name}: '{value}' not in {shown}",
                input_config=config if len(choices) <= 20 else None,
                received_value=value,
            )
    return None


def _lt(a: Any, b: Any) -> bool:
    try:
        return bool(a < b)
    except TypeError:
        return False


def _custom_validation(spec: NodeSpec, inputs: dict[str, Any], linked_types: dict[str, str]) -> list[Error]:
    assert spec.validate is not None
    wanted = spec.validate_params
    # ComfyUI's rule: linked inputs are not computed yet at validation, so they arrive as None.
    arguments = {
        name: None if isinstance(value, list) else value
        for name, value in inputs.items()
        if wanted is None or name in wanted
    }
    if wanted is not None and "input_types" in wanted:
        arguments["input_types"] = linked_types
    try:
        result = settled(spec.validate(**arguments))  # ComfyUI awaits an async VALIDATE_INPUTS
    except Exception as exc:
        return [
            {
                "type": "exception_during_validation",
                "message": "Exception when validating node",
                "details": str(exc),
                "extra_info": {
                    "exception_type": f"{type(exc).__module__}.{type(exc).__qualname__}",
                    "traceback": traceback.format_tb(exc.__traceback__),
                },
            }
        ]
    if result is True:
        return []
    return [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "" if result is False else str(result),
            "extra_info": {},
        }
    ]


def describe_errors(result: ValidationResult) -> str:
    """A validation result as text a person can act on (for the CLI and the server log)."""
    lines = []
    if result.error:
        lines.append(
            f"{result.error['message']}"
            + (f" ({result.error['details']})" if not result.node_errors and result.error["details"] else "")
        )
    for node_id, entry in result.node_errors.items():
        lines.append(f"  node #{node_id} ({entry['class_type']}):")
        for error in entry["errors"]:
            lines.append(f"    - {error['message']}: {error['details']}")
    return "\n".join(lines)
