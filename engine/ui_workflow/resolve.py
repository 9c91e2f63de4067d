"""Following links to the node that really produces a value, as the frontend's ExecutableNodeDTO does.

A link may start at a Reroute (followed through its input), at a bypassed node (followed through
the input that matches the consumer's type) or at a PrimitiveNode (no link: its value was written
into the consumer's widget instead).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from engine.ui_workflow.model import BYPASS, PRIMITIVE, UiGraph, UiNode
from engine.ui_workflow.widgets import wrap

# (origin node id, output index) as the API prompt links it.
Source = tuple[str, int]
# ("in" / "out", node id, slot): every socket a resolution passed, to report loops.
Visited = set[tuple[str, str, int]]


def compatible(a: str, b: str) -> bool:
    """litegraph's isValidConnection: equal, either a wildcard, or comma-separated lists that overlap."""
    if a == b or "*" in (a, b):
        return True
    a, b = a.lower(), b.lower()
    if "," not in a and "," not in b:
        return a == b
    return bool(set(a.split(",")) & set(b.split(",")))


class Resolver:
    def __init__(self, graph: UiGraph) -> None:
        self.graph = graph

    def resolve_input(
        self, node: UiNode, index: int, wanted: str, visited: Visited | None = None
    ) -> Source | None:
        """Where input `index` of `node` really comes from; None when nothing is connected."""
        visited = set() if visited is None else visited
        slot = node.inputs[index]
        self._visit(visited, ("in", node.id, index), node, f"input {slot.name!r}")
        if slot.link is None:
            return None
        link = self.graph.links.get(slot.link)
        if link is None:
            raise node.error(f"input {slot.name!r} uses link {slot.link}, which is not in the links list")
        origin = self.graph.nodes.get(link.origin_id)
        if origin is None:
            raise node.error(
                f"input {slot.name!r} is linked to node #{link.origin_id}, which is not in the workflow"
            )
        return self._resolve_output(origin, link.origin_slot, wanted, visited)

    def _resolve_output(self, node: UiNode, slot: int, wanted: str, visited: Visited) -> Source | None:
        self._visit(visited, ("out", node.id, slot), node, f"output {slot}")
        if slot < 0:
            raise node.error(f"a link starts at output {slot}, which does not exist")
        if node.mode == BYPASS:
            index = self._bypass_input(node, slot, wanted)
            if index is None:
                return None  # no input of a matching type: the consumer gets nothing
            return self.resolve_input(node, index, node.inputs[index].type, visited)
        if node.virtual:  # Reroute: output n passes input n through; PrimitiveNode has no inputs
            return self.resolve_input(node, slot, wanted, visited) if slot < len(node.inputs) else None
        return (node.id, slot)

    @staticmethod
    def _visit(visited: Visited, key: tuple[str, str, int], node: UiNode, what: str) -> None:
        if key in visited:
            raise node.error(f"{what} leads back to itself through reroutes or bypassed nodes")
        visited.add(key)

    @staticmethod
    def _bypass_input(node: UiNode, slot: int, wanted: str) -> int | None:
        """The input a bypassed node passes to output `slot` for a consumer of type `wanted`."""
        inputs = node.inputs
        if not inputs:
            return None
        if wanted == "*":
            return slot if slot < len(inputs) else 0
        if slot >= len(node.output_types):
            raise node.error(f"a link starts at output {slot}, but the node has {len(node.output_types)}")
        produced = node.output_types[slot]
        same = inputs[slot].type if slot < len(inputs) else None
        if same is not None and compatible(same, produced) and compatible(same, wanted):
            return slot
        for index, candidate in enumerate(inputs):
            if candidate.type == wanted:
                return index
        for index, candidate in enumerate(inputs):
            if compatible(candidate.type, produced) and compatible(candidate.type, wanted):
                return index
        return None


def primitive_values(graph: UiGraph) -> dict[str, dict[str, Any]]:
    """Widget values PrimitiveNodes write into the nodes they feed: {node id: {widget name: value}}."""
    values: dict[str, dict[str, Any]] = defaultdict(dict)
    for node in graph.nodes.values():
        if node.type != PRIMITIVE or not isinstance(node.widgets_values, list) or not node.widgets_values:
            continue
        value = node.widgets_values[0]  # then its own control_after_generate (and combo filter)
        for link in graph.links.values():
            target = graph.nodes.get(link.target_id)
            if link.origin_id != node.id or link.origin_slot != 0 or target is None:
                continue
            widget = next((s.widget for s in target.inputs if s.link == link.id), None)
            if widget is not None:
                values[target.id][widget] = wrap(value)
    return values
