"""Building graphs that a node returns for expansion, and the ExecutionBlocker value.

A node may return `{"expand": graph, "result": outputs}`: `graph` is API-format nodes that run as part
of the prompt, `outputs` gives one value per output slot, either a literal or a link `[node_id, slot]`
into the new nodes. `GraphBuilder` makes such graphs with ids that are unique and deterministic: the
executor sets a default prefix (the expanding node's id and call index) before each call, so builders
created without a prefix never clash across calls, runs or nesting levels.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

_default_prefix: ContextVar[tuple[str, int, int]] = ContextVar("graph_builder_prefix", default=("", 0, 0))


def is_link(value: Any) -> bool:
    """ComfyUI's graph_utils.is_link: `[str node_id, int or float slot]`."""
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str)
        and isinstance(value[1], (int, float))
        and not isinstance(value[1], bool)
    )


class ExecutionBlocker:
    """Returned in place of an output value: every node that receives it is skipped and passes the
    blocker on. With a message, the skip is reported to the user as an execution error; with None it
    is silent. Inside a list only the item that carries the blocker is skipped."""

    def __init__(self, message: str | None) -> None:
        self.message = message

    def __repr__(self) -> str:
        return f"ExecutionBlocker({self.message!r})"


class BuilderNode:
    """One node of a GraphBuilder graph."""

    def __init__(self, node_id: str, class_type: str, inputs: dict[str, Any]) -> None:
        self.id = node_id
        self.class_type = class_type
        self.inputs = inputs
        self.override_display_id: str | None = None

    def out(self, index: int) -> list[Any]:
        return [self.id, index]

    def set_input(self, key: str, value: Any) -> None:
        """Set an input; None removes it (an optional input left unconnected)."""
        if value is None:
            self.inputs.pop(key, None)
        else:
            self.inputs[key] = value

    def get_input(self, key: str) -> Any:
        return self.inputs.get(key)

    def set_override_display_id(self, override_display_id: str) -> None:
        """Show this node's progress and outputs as another node (by default: the expanding node)."""
        self.override_display_id = override_display_id

    def serialize(self) -> dict[str, Any]:
        node: dict[str, Any] = {"class_type": self.class_type, "inputs": self.inputs}
        if self.override_display_id is not None:
            node["override_display_id"] = self.override_display_id
        return node


class GraphBuilder:
    def __init__(self, prefix: str | None = None) -> None:
        self.prefix = GraphBuilder.alloc_prefix() if prefix is None else prefix
        self.nodes: dict[str, BuilderNode] = {}
        self.id_gen = 1

    @classmethod
    def set_default_prefix(cls, prefix_root: str, call_index: int, graph_index: int = 0) -> None:
        _default_prefix.set((prefix_root, call_index, graph_index))

    @classmethod
    def alloc_prefix(
        cls, root: str | None = None, call_index: int | None = None, graph_index: int | None = None
    ) -> str:
        """`root.call.graph.`, then the next builder in the same call gets graph index + 1."""
        default_root, default_call, default_graph = _default_prefix.get()
        root = default_root if root is None else root
        call_index = default_call if call_index is None else call_index
        graph_index = default_graph if graph_index is None else graph_index
        _default_prefix.set((default_root, default_call, default_graph + 1))
        return f"{root}.{call_index}.{graph_index}."

    def node(self, class_type: str, id: str | None = None, **inputs: Any) -> BuilderNode:
        """Add a node (or return the one already added under this id)."""
        if id is None:
            id = str(self.id_gen)
            self.id_gen += 1
        node_id = self.prefix + id
        if node_id not in self.nodes:
            self.nodes[node_id] = BuilderNode(node_id, class_type, inputs)
        return self.nodes[node_id]

    def lookup_node(self, id: str) -> BuilderNode | None:
        return self.nodes.get(self.prefix + id)

    def finalize(self) -> dict[str, dict[str, Any]]:
        return {node_id: node.serialize() for node_id, node in self.nodes.items()}

    def replace_node_output(self, node_id: str, index: int, new_value: Any) -> None:
        """Point every input linked to `node_id`'s output `index` at `new_value` (None: unlink them)."""
        target = self.prefix + node_id
        for node in self.nodes.values():
            for key, value in list(node.inputs.items()):
                if is_link(value) and value[0] == target and value[1] == index:
                    node.set_input(key, new_value)

    def remove_node(self, id: str) -> None:
        del self.nodes[self.prefix + id]


def add_graph_prefix(
    graph: dict[str, dict[str, Any]], outputs: tuple[Any, ...] | list[Any], prefix: str
) -> tuple[dict[str, dict[str, Any]], tuple[Any, ...]]:
    """The same graph and outputs with every node id (and every link between them) prefixed."""

    def moved(value: Any) -> Any:
        return [prefix + value[0], value[1]] if is_link(value) else value

    new_graph = {
        prefix + node_id: {
            "class_type": node["class_type"],
            "inputs": {name: moved(value) for name, value in node.get("inputs", {}).items()},
        }
        for node_id, node in graph.items()
    }
    return new_graph, tuple(moved(value) for value in outputs)
