"""The parts of a UI-format workflow the conversion reads, checked once so later steps cannot crash.

Both serialisations are read: schema 0.4 (`"links": [[id, origin_id, origin_slot, target_id,
target_slot, type], ...]`) and schema 1 (`"version": 1`, links as objects with the same fields).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.registry import NodeRegistry

# LGraphEventMode: 0 always, 1 on event, 2 never (muted), 3 on trigger, 4 bypass.
NEVER = 2
BYPASS = 4
# Frontend-only nodes: never sent to the server. Reroute passes its input through; PrimitiveNode
# writes its value into the widgets it is linked to; notes only show text.
REROUTE = "Reroute"
PRIMITIVE = "PrimitiveNode"
VIRTUAL_TYPES = frozenset({REROUTE, PRIMITIVE, "Note", "MarkdownNote"})
# Where flattening leaves the widget values a subgraph instance passes to an inner node, by widget name.
OVERRIDES = "loom_widget_overrides"


class WorkflowConversionError(ValueError):
    """A UI workflow that cannot be converted; the message names the node and what is wrong."""

    def __init__(self, message: str, node_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node_id = node_id


@dataclass(frozen=True)
class Link:
    id: int
    origin_id: str
    origin_slot: int
    target_id: str


@dataclass(frozen=True)
class Slot:
    """One input socket of a node: its name, type, link id, and the widget it stands for, if any."""

    name: str
    type: str
    link: int | None
    widget: str | None


@dataclass(frozen=True)
class UiNode:
    id: str
    type: str
    title: str | None
    mode: int
    inputs: tuple[Slot, ...]
    output_types: tuple[str, ...]
    widgets_values: list[Any] | dict[str, Any] | None
    virtual: bool
    # Widget values a subgraph instance passes to this inner node (engine.ui_workflow.subgraphs).
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        title = f" {self.title!r}" if self.title else ""
        return f"node #{self.id} ({self.type}{title})"

    def error(self, problem: str) -> WorkflowConversionError:
        return WorkflowConversionError(f"{self.describe()}: {problem}", self.id)


@dataclass(frozen=True)
class UiGraph:
    nodes: dict[str, UiNode]
    links: dict[int, Link]


def parse_workflow(workflow: Any, registry: NodeRegistry) -> UiGraph:
    if not isinstance(workflow, dict) or not isinstance(workflow.get("nodes"), list):
        raise WorkflowConversionError('not a UI workflow: it needs a "nodes" list')
    raw_links = workflow.get("links", [])
    if not isinstance(raw_links, list):
        raise WorkflowConversionError('not a UI workflow: "links" must be a list')
    special = _special_types(workflow)
    nodes: dict[str, UiNode] = {}
    missing: list[UiNode] = []
    for index, raw in enumerate(workflow["nodes"]):
        node = _parse_node(index, raw)
        if node.id in nodes:
            raise node.error(f"another node has the same id, {nodes[node.id].describe()}")
        if not _check_type(node, registry, special):
            missing.append(node)
        nodes[node.id] = node
    if missing:
        raise _missing_types(missing)
    links: dict[int, Link] = {}
    for raw in raw_links:
        link = _parse_link(raw)
        if link is not None:
            links[link.id] = link
    return UiGraph(nodes, links)


def _node_id(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or value == "":
        return None
    return str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _parse_node(index: int, raw: Any) -> UiNode:
    if not isinstance(raw, dict):
        raise WorkflowConversionError(f"nodes[{index}] is not an object")
    node_id = _node_id(raw.get("id"))
    if node_id is None:
        raise WorkflowConversionError(f"nodes[{index}] has no valid id (got {raw.get('id')!r})")
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type:
        raise WorkflowConversionError(f"node #{node_id} has no type", node_id)
    title = raw.get("title") if isinstance(raw.get("title"), str) else None
    node = UiNode(node_id, node_type, title, 0, (), (), None, node_type in VIRTUAL_TYPES)
    mode = raw.get("mode", 0)
    if mode is None:
        mode = 0
    if _int(mode) is None:
        raise node.error(f"mode must be a number, got {mode!r}")
    values = raw.get("widgets_values")
    if values is not None and not isinstance(values, (list, dict)):
        raise node.error(f"widgets_values must be a list or an object, got {type(values).__name__}")
    return UiNode(
        node_id,
        node_type,
        title,
        mode,
        tuple(_parse_slot(node, i, s) for i, s in enumerate(_list(node, raw, "inputs"))),
        tuple(_output_type(node, i, s) for i, s in enumerate(_list(node, raw, "outputs"))),
        values,
        node.virtual,
        dict(raw.get(OVERRIDES) or {}),
    )


def _list(node: UiNode, raw: dict[str, Any], key: str) -> list[Any]:
    value = raw.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise node.error(f"{key} must be a list, got {type(value).__name__}")
    return value


def _slot_type(value: Any) -> str:
    # litegraph stores "*" / "" / 0 / -1 for wildcard and event slots.
    return value if isinstance(value, str) and value else "*"


def _parse_slot(node: UiNode, index: int, raw: Any) -> Slot:
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise node.error(f"input slot {index} is not an object with a name")
    link = raw.get("link")
    if link is not None and _int(link) is None:
        raise node.error(f"input {raw['name']!r} has link {link!r}, which is not a link id")
    widget = raw.get("widget")
    widget_name = widget.get("name") if isinstance(widget, dict) else None
    return Slot(
        raw["name"],
        _slot_type(raw.get("type")),
        link,
        widget_name if isinstance(widget_name, str) else None,
    )


def _output_type(node: UiNode, index: int, raw: Any) -> str:
    if not isinstance(raw, dict):
        raise node.error(f"output slot {index} is not an object")
    return _slot_type(raw.get("type"))


def _parse_link(raw: Any) -> Link | None:
    """A link from either serialisation; malformed entries are skipped (an error only if used)."""
    if isinstance(raw, list) and len(raw) >= 5:
        fields = raw[:4]
    elif isinstance(raw, dict):
        fields = [raw.get(k) for k in ("id", "origin_id", "origin_slot", "target_id")]
    else:
        return None
    # The target slot is not read: a node's input names its link, which survives slot renumbering.
    link_id, origin_slot = _int(fields[0]), _int(fields[2])
    origin_id, target_id = _node_id(fields[1]), _node_id(fields[3])
    if link_id is None or origin_slot is None or origin_id is None or target_id is None:
        return None
    return Link(link_id, origin_id, origin_slot, target_id)


def _special_types(workflow: dict[str, Any]) -> dict[str, str]:
    """Node types that stand for subgraphs, with what to call them (group nodes are unpacked before)."""
    names: dict[str, str] = {}
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    for subgraph in subgraphs if isinstance(subgraphs, list) else []:
        if isinstance(subgraph, dict) and isinstance(subgraph.get("id"), str):
            names[subgraph["id"]] = f"subgraph {subgraph.get('name', subgraph['id'])!r}"
    return names


def _check_type(node: UiNode, registry: NodeRegistry, special: dict[str, str]) -> bool:
    """False when the node's type is not installed (the caller reports every such node at once)."""
    # Muted and bypassed nodes never reach the server, so their type need not be known.
    if node.virtual or node.type in registry or node.mode in (NEVER, BYPASS):
        return True
    if node.type in special:
        raise node.error(
            f"{special[node.type]} is not supported by headless conversion yet; "
            "unpack it into plain nodes in the editor and save again"
        )
    return False


def _missing_types(missing: list[UiNode]) -> WorkflowConversionError:
    """One error naming every missing node type and the nodes that use it, so a user can install
    all the packs at once instead of discovering them one per attempt."""
    if len(missing) == 1:
        return missing[0].error(f"node type {missing[0].type!r} is not installed in Loom")
    by_type: dict[str, list[str]] = {}
    for node in missing:
        by_type.setdefault(node.type, []).append(f"#{node.id}")
    listed = "; ".join(f"{kind!r} (node {', '.join(ids)})" for kind, ids in by_type.items())
    return WorkflowConversionError(
        f"{len(by_type)} node type{'s' if len(by_type) > 1 else ''} not installed in Loom: {listed}",
        missing[0].id,
    )
