"""ComfyUI's UI-format (litegraph) workflow JSON converted to the API-format prompt.

A saved workflow stores the canvas: nodes with positional `widgets_values`, links in a table, and
frontend-only nodes (Reroute, PrimitiveNode, Note). The frontend's `graphToPrompt` turns that into
the API prompt when it queues; `ui_to_api` does the same on the server so a saved UI workflow can
be submitted headless. See docs/workflow-formats.md for what is and is not handled.
"""

from __future__ import annotations

from typing import Any

from engine.registry import NodeRegistry
from engine.ui_workflow.groupnodes import expand_group_nodes
from engine.ui_workflow.model import (
    BYPASS,
    NEVER,
    WorkflowConversionError,
    parse_workflow,
)
from engine.ui_workflow.resolve import Resolver, primitive_values
from engine.ui_workflow.subgraphs import flatten
from engine.ui_workflow.widgets import widget_inputs

__all__ = ["WorkflowConversionError", "is_ui_workflow", "ui_to_api"]


def is_ui_workflow(body: Any) -> bool:
    """True for a UI-format workflow (it has "nodes" and "links" lists); API prompts have neither."""
    return (
        isinstance(body, dict) and isinstance(body.get("nodes"), list) and isinstance(body.get("links"), list)
    )


def ui_to_api(workflow: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """The API-format prompt `{node_id: {"inputs", "class_type", "_meta"}}` the frontend would queue.

    Raises WorkflowConversionError, naming the node, for anything it cannot convert.
    """
    graph = parse_workflow(flatten(expand_group_nodes(workflow, registry)), registry)
    resolver = Resolver(graph)
    overrides = primitive_values(graph)
    prompt: dict[str, Any] = {}
    for node in graph.nodes.values():
        if node.virtual or node.mode in (NEVER, BYPASS):
            continue
        spec = registry.get(node.type)
        assert spec is not None  # parse_workflow rejects unknown types of nodes that run
        inputs = widget_inputs(node, spec)
        inputs.update(overrides.get(node.id, {}))
        for index, slot in enumerate(node.inputs):
            source = resolver.resolve_input(node, index, slot.type)
            if source is not None:
                inputs[slot.name] = [source[0], source[1]]
        prompt[node.id] = {
            "inputs": inputs,
            "class_type": node.type,
            "_meta": {"title": node.title or spec.display_name},
        }
    # Like the frontend: an input linked to a node that was left out (muted) is dropped.
    for entry in prompt.values():
        inputs = entry["inputs"]
        for name in [n for n, v in inputs.items() if isinstance(v, list) and v[0] not in prompt]:
            del inputs[name]
    return prompt
