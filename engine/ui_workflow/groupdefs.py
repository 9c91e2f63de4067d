"""The node definition the front end derives from a legacy group node's stored definition
(`extra.groupNodes[name]`), rebuilt here from the inner nodes' specs (engine.ui_workflow.groupnodes uses it).

A definition stores the grouped nodes in order (`index` = position), the links between them as
`[from index, from slot, to index, to slot, original origin id, type]` (from index null: the link came
from outside the group) and `external`: `[index, slot, type]` for outputs used outside. The group's:
- inputs, node by node: a widget stored on the inner node is a group widget at once; an unlinked socket
  input is a group input (numbered in that order); widgets the inner node shows as inputs ("converted",
  which newer front ends do for every widget) follow after all nodes, as group widgets and inputs.
  Names: `config[index].input[name].name`, else the slot's label, else the input name; a name already
  taken becomes "<inner title or type> <input>", then "<inner title or type> <n> <input>".
  `seed` and `noise_seed` get a control_after_generate widget;
- outputs: every inner output not linked inside the group or listed in `external`, in node order;
- an inner Reroute used only inside is not part of the definition; one fed from outside is a socket
  named after its type; an inner PrimitiveNode that feeds a widget is a widget "value" (or
  "<title> value") whose value it passes on.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from engine.registry import NodeRegistry
from engine.spec import InputSpec
from engine.ui_workflow.model import PRIMITIVE, REROUTE, WorkflowConversionError
from engine.ui_workflow.widgets import SEED_NAMES, is_widget, layout, stored_values


@dataclass(frozen=True)
class GroupInput:
    """One input of the group's definition: the inner node and input it stands for."""

    spec: InputSpec  # under the group's name for it, with the options its widget gets
    index: int  # inner node
    inner: str  # inner input name
    slot: int  # inner input slot


@dataclass
class GroupDef:
    name: str
    nodes: list[dict[str, Any]]
    links: list[list[Any]]
    inputs: dict[str, GroupInput] = field(default_factory=dict)  # by group name, in definition order
    numbered: list[GroupInput] = field(default_factory=list)  # group input n
    outputs: list[tuple[int, int]] = field(default_factory=list)  # group output n: (index, slot)


def instance_error(instance: dict[str, Any], problem: str) -> WorkflowConversionError:
    return WorkflowConversionError(
        f"node #{instance.get('id')} ({instance.get('type')}): {problem}", str(instance.get("id"))
    )


class _Builder:
    def __init__(self, name: str, data: Any, registry: NodeRegistry, instance: dict[str, Any]) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise instance_error(instance, f"group node {name!r} has no list of nodes in extra.groupNodes")
        self.registry = registry
        self.group = GroupDef(name, [n for n in data["nodes"] if isinstance(n, dict)], [])
        self.config = data.get("config") if isinstance(data.get("config"), dict) else {}
        self.links_from: dict[int, dict[int, list[list[Any]]]] = {}
        self.links_to: dict[int, dict[int, list[Any]]] = {}
        self.all_links = [raw for raw in data.get("links") or [] if isinstance(raw, list) and len(raw) >= 4]
        for raw in self.all_links:
            if (
                isinstance(raw, list)
                and len(raw) >= 4
                and isinstance(raw[0], int)
                and isinstance(raw[2], int)
            ):
                self.group.links.append(raw)
                self.links_from.setdefault(raw[0], {}).setdefault(raw[1], []).append(raw)
                self.links_to.setdefault(raw[2], {})[raw[3]] = raw
        self.external: dict[int, dict[int, Any]] = {}
        for ext in data.get("external") or []:
            # Some front ends stored the node object instead of its index; the front end then keys it
            # as "[object Object]", which matches no index, so such entries change nothing.
            if isinstance(ext, list) and len(ext) >= 3 and isinstance(ext[0], int):
                self.external.setdefault(ext[0], {})[ext[1]] = ext[2]
        self.seen: dict[str, int] = {}
        missing = sorted({str(n.get("type")) for n in self.group.nodes if not self._known(n)})
        if missing:
            raise instance_error(
                instance, f"group node {name!r} holds node types not installed in Loom: {missing}"
            )

    def _known(self, node: dict[str, Any]) -> bool:
        return node.get("type") in self.registry or node.get("type") in (
            PRIMITIVE,
            REROUTE,
            "Note",
            "MarkdownNote",
        )

    def build(self) -> GroupDef:
        converted: list[tuple[int, dict[int, InputSpec]]] = []
        for index, node in enumerate(self.group.nodes):
            definition = self._definition(index, node)
            if definition is None:
                continue
            inputs, outputs = definition
            converted.append((index, self._node_inputs(index, node, inputs)))
            self._node_outputs(index, node, outputs)
        for index, widgets in converted:  # converted widgets come after every node's own inputs
            for slot in sorted(widgets):
                if slot not in self.links_to.get(index, {}):
                    self._add(index, self.group.nodes[index], widgets[slot], slot, numbered=True)
        return self.group

    def _definition(self, index: int, node: dict[str, Any]) -> tuple[list[InputSpec], list[str]] | None:
        """The inner node's inputs (required, then optional) and output types, as the group reads them."""
        spec = self.registry.get(str(node.get("type")))
        if spec is not None:
            inputs = spec.sections("required") + spec.sections("optional")
            return inputs, [o.type for o in spec.outputs]
        if node.get("type") == PRIMITIVE:
            return self._primitive(index)
        if node.get("type") == REROUTE:
            return self._reroute(index)
        return None  # notes

    def _primitive(self, index: int) -> tuple[list[InputSpec], list[str]] | None:
        """A PrimitiveNode is a widget shaped like the first widget it feeds (skipped if it feeds none)."""
        links = self.links_from.get(index, {}).get(0)
        if not links:
            return None
        target = _inner_input(self.registry, self.group.nodes, links[0][2], links[0][3])
        kind = str(links[0][5]) if len(links[0]) > 5 else "*"
        value = InputSpec("value", kind)
        if target is not None:
            options = dict(target.options) | {"control_after_generate": True}
            value = InputSpec("value", target.type, "required", options, target.choices)
        return [value], [value.type]

    def _reroute(self, index: int) -> tuple[list[InputSpec], list[str]] | None:
        """A Reroute linked on both sides inside the group is not part of it; otherwise it is a socket."""
        into, out_of = self.links_to.get(index), self.links_from.get(index)
        if into and out_of and not self.external.get(index, {}).get(0):
            return None
        kind = "*"
        if out_of:
            for link in out_of.get(0, []):
                kind = _slot_type(self.group.nodes, link[2], link[3]) if kind == "*" else kind
        elif into and 0 in into:
            source = self.group.nodes[into[0][0]].get("outputs") or []
            kind = _type(source[into[0][1]]) if into[0][1] < len(source) else "*"
        else:
            kind = self._reroute_pipe_type(index)
        return [InputSpec(kind, kind, "required", {"forceInput": True})], [kind]

    def _reroute_pipe_type(self, index: int) -> str:
        for data in self.all_links:
            if data[2] == index and len(data) > 5 and isinstance(data[5], str):
                return data[5]
        external = self.external.get(index, {}).get(0)
        return external if isinstance(external, str) and external else "*"

    def _node_inputs(self, index: int, node: dict[str, Any], inputs: list[InputSpec]) -> dict[int, InputSpec]:
        """Adds the node's widgets and unlinked sockets; returns its converted widgets by slot."""
        slots = inner_inputs(node)
        converted: dict[int, InputSpec] = {}
        sockets: list[InputSpec] = []
        newer = self._newer_widgets(node)
        for item in inputs:
            if not is_widget(item):
                sockets.append(item)
                continue
            if item.name in newer:
                continue
            slot = find_input(slots, item.name, widget=True)
            if slot >= 0:
                converted[slot] = item
            else:
                self._add(index, node, item, -1, numbered=False)
        for position, item in enumerate(sockets):
            found = find_input(slots, item.name, widget=False)
            slot = found if found >= 0 else position
            if slot in self.links_to.get(index, {}):
                continue  # fed inside the group
            self._add(index, node, item, slot, numbered=True)
        return converted

    def _newer_widgets(self, node: dict[str, Any]) -> set[str]:
        """Widgets the inner node stores no value for: inputs its type gained after the group was saved
        (HiDream E1's DualCFGGuider has no `style`). The front end would give them a group widget and
        shift every later saved value by one, which no version of the workflow meant; they are left out
        so they keep their defaults."""
        spec = self.registry.get(str(node.get("type")))
        stored = node.get("widgets_values")
        if spec is None or not isinstance(stored, list):
            return set()
        widgets = {w.input.name for w in layout(spec, stored=stored) if w.input is not None}
        return widgets - set(stored_values(spec, stored))

    def _add(self, index: int, node: dict[str, Any], item: InputSpec, slot: int, numbered: bool) -> None:
        """One group input, named as the front end names it."""
        custom = _dig(self.config, str(index), "input", item.name)
        name = custom.get("name") if isinstance(custom.get("name"), str) else None
        name = name or _label(node, item.name) or item.name
        key = name
        prefix = ""
        if (node.get("type") == PRIMITIVE and node.get("title")) or name in self.seen:
            prefix = f"{node.get('title') or node.get('type')} "
            key = name = prefix + item.name
            if name in self.seen:
                name = f"{prefix}{self.seen[name]} {item.name}"
        self.seen[key] = self.seen.get(key, 1) + 1
        if numbered and custom.get("visible") is False and slot >= 0 and not is_widget(item):
            return  # a hidden socket
        options = dict(item.options)
        if item.name in SEED_NAMES:
            options["control_after_generate"] = True
        entry = GroupInput(
            replace(item, name=name, section="required", options=options), index, item.name, slot
        )
        self.group.inputs[name] = entry  # a repeated name keeps its place but now means this input
        if numbered:
            self.group.numbered.append(entry)

    def _node_outputs(self, index: int, node: dict[str, Any], outputs: list[str]) -> None:
        inside, external = self.links_from.get(index, {}), self.external.get(index, {})
        for slot in range(len(outputs)):
            linked = bool(inside.get(slot)) and not external.get(slot)
            custom = _dig(self.config, str(index), "output", str(slot))
            visible = custom.get("visible", not linked)
            if visible:
                self.group.outputs.append((index, slot))


def build_group(name: str, data: Any, registry: NodeRegistry, instance: dict[str, Any]) -> GroupDef:
    return _Builder(name, data, registry, instance).build()


def _dig(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def find_input(slots: list[Any], name: str, widget: bool) -> int:
    """The inner node's input slot of this name (for a widget: one shown as an input), or -1."""
    for position, slot in enumerate(slots):
        if not isinstance(slot, dict) or slot.get("name") != name:
            continue
        shown = slot.get("widget")
        if not widget or (isinstance(shown, dict) and shown.get("name") == name):
            return position
    return -1


def _label(node: dict[str, Any], name: str) -> str | None:
    slots = inner_inputs(node)
    slot = slots[find_input(slots, name, widget=False)] if find_input(slots, name, widget=False) >= 0 else {}
    label = slot.get("label")
    return label if isinstance(label, str) and label else None


def inner_inputs(node: dict[str, Any]) -> list[Any]:
    slots = node.get("inputs")
    return slots if isinstance(slots, list) else []


def _type(slot: Any) -> str:
    kind = slot.get("type") if isinstance(slot, dict) else None
    return kind if isinstance(kind, str) and kind else "*"


def _slot_type(nodes: list[dict[str, Any]], index: int, slot: int) -> str:
    slots = nodes[index].get("inputs") if 0 <= index < len(nodes) else None
    return _type(slots[slot]) if isinstance(slots, list) and 0 <= slot < len(slots) else "*"


def _inner_input(
    registry: NodeRegistry, nodes: list[dict[str, Any]], index: int, slot: int
) -> InputSpec | None:
    """The input spec of the widget a link into inner node `index`, slot `slot`, feeds."""
    if not 0 <= index < len(nodes):
        return None
    spec = registry.get(str(nodes[index].get("type")))
    slots = inner_inputs(nodes[index])
    entry = slots[slot] if 0 <= slot < len(slots) and isinstance(slots[slot], dict) else {}
    widget = entry.get("widget")
    name = widget.get("name") if isinstance(widget, dict) else entry.get("name")
    return spec.input(name) if spec is not None and isinstance(name, str) else None
