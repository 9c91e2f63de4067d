"""Legacy group nodes (`extra.groupNodes`, node type `workflow>Name` or `workflow/Name`) unpacked into
plain nodes before conversion, as the front end's group-node extension does when it queues them.

A definition stores the grouped nodes in order (`index` = position), the links between them as
`[from index, from slot, to index, to slot, original origin id, type]` (from index null: the link came
from outside the group) and `external`: `[index, slot, type]` for outputs used outside. From that the
front end derives the group's node definition, as rebuilt here:
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
An instance's inner nodes get the ids `<instance id>:<index>`, its widget values override the inner
widgets they stand for, its input n feeds the inner input numbered n, and its output n is the inner
output it stands for. A muted or bypassed instance is left whole: the front end never sends its
inner nodes, and a bypassed one passes its inputs on by type like any node.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import count
from typing import Any

from engine.registry import NodeRegistry
from engine.spec import InputSpec, NodeSpec
from engine.ui_workflow.model import OVERRIDES, PRIMITIVE, REROUTE, WorkflowConversionError
from engine.ui_workflow.subgraphs import link_row
from engine.ui_workflow.widgets import SEED_NAMES, is_widget, layout, stored_values

PREFIXES = ("workflow>", "workflow/")
MUTED_MODES = (2, 4)  # never, bypass


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


def expand_group_nodes(workflow: dict[str, Any], registry: NodeRegistry) -> dict[str, Any]:
    """The workflow with every running group-node instance replaced by its inner nodes."""
    if not isinstance(workflow, dict):
        return workflow
    extra = workflow.get("extra")
    groups = extra.get("groupNodes") if isinstance(extra, dict) else None
    if not isinstance(groups, dict) or not groups:
        return workflow
    nodes = [n for n in workflow.get("nodes", []) if isinstance(n, dict)]
    instances = [n for n in nodes if _group_name(n, groups) is not None and n.get("mode") not in MUTED_MODES]
    if not instances:
        return workflow
    links = [x for x in (link_row(raw) for raw in workflow.get("links", [])) if x]
    ids = count(1 + max((x[0] for x in links if isinstance(x[0], int)), default=0))
    built: dict[str, GroupDef] = {}
    out_nodes = [n for n in nodes if n not in instances]
    for instance in instances:
        name = _group_name(instance, groups)
        assert name is not None
        if name not in built:
            built[name] = _build(name, groups[name], registry, instance)
        out_nodes += _expand(instance, built[name], links, ids)
    out = {k: v for k, v in workflow.items() if k not in ("nodes", "links")}
    out["nodes"], out["links"] = out_nodes, links
    return out


def _group_name(node: dict[str, Any], groups: dict[str, Any]) -> str | None:
    kind = node.get("type")
    for prefix in PREFIXES:
        if isinstance(kind, str) and kind.startswith(prefix) and kind[len(prefix) :] in groups:
            return kind[len(prefix) :]
    return None


def _error(instance: dict[str, Any], problem: str) -> WorkflowConversionError:
    return WorkflowConversionError(
        f"node #{instance.get('id')} ({instance.get('type')}): {problem}", str(instance.get("id"))
    )


# --- the group's definition ---------------------------------------------------------------------


class _Builder:
    def __init__(self, name: str, data: Any, registry: NodeRegistry, instance: dict[str, Any]) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("nodes"), list):
            raise _error(instance, f"group node {name!r} has no list of nodes in extra.groupNodes")
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
            raise _error(instance, f"group node {name!r} holds node types not installed in Loom: {missing}")

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
        slots = _inputs(node)
        converted: dict[int, InputSpec] = {}
        sockets: list[InputSpec] = []
        newer = self._newer_widgets(node)
        for item in inputs:
            if not is_widget(item):
                sockets.append(item)
                continue
            if item.name in newer:
                continue
            slot = _find(slots, item.name, widget=True)
            if slot >= 0:
                converted[slot] = item
            else:
                self._add(index, node, item, -1, numbered=False)
        for position, item in enumerate(sockets):
            found = _find(slots, item.name, widget=False)
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
        self.group.inputs.setdefault(name, entry)
        if numbered:
            self.group.numbered.append(entry)

    def _node_outputs(self, index: int, node: dict[str, Any], outputs: list[str]) -> None:
        for slot in range(len(outputs)):
            linked = bool(self.links_from.get(index, {}).get(slot)) and not self.external.get(index, {}).get(
                slot
            )
            custom = _dig(self.config, str(index), "output", str(slot))
            visible = custom.get("visible", not linked)
            if visible:
                self.group.outputs.append((index, slot))


def _build(name: str, data: Any, registry: NodeRegistry, instance: dict[str, Any]) -> GroupDef:
    return _Builder(name, data, registry, instance).build()


def _dig(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _find(slots: list[Any], name: str, widget: bool) -> int:
    """The inner node's input slot of this name (for a widget: one shown as an input), or -1."""
    for position, slot in enumerate(slots):
        if not isinstance(slot, dict) or slot.get("name") != name:
            continue
        shown = slot.get("widget")
        if not widget or (isinstance(shown, dict) and shown.get("name") == name):
            return position
    return -1


def _label(node: dict[str, Any], name: str) -> str | None:
    slots = _inputs(node)
    slot = slots[_find(slots, name, widget=False)] if _find(slots, name, widget=False) >= 0 else {}
    label = slot.get("label")
    return label if isinstance(label, str) and label else None


def _inputs(node: dict[str, Any]) -> list[Any]:
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
    slots = _inputs(nodes[index])
    entry = slots[slot] if 0 <= slot < len(slots) and isinstance(slots[slot], dict) else {}
    widget = entry.get("widget")
    name = widget.get("name") if isinstance(widget, dict) else entry.get("name")
    return spec.input(name) if spec is not None and isinstance(name, str) else None


# --- one instance ---------------------------------------------------------------------------------


def _expand(
    instance: dict[str, Any], group: GroupDef, links: list[list[Any]], ids: Iterator[int]
) -> list[dict[str, Any]]:
    """The instance's inner nodes; `links` is rewired in place."""
    prefix = f"{instance['id']}:"
    inner = copy.deepcopy(group.nodes)
    for index, node in enumerate(inner):
        node["id"] = prefix + str(index)
        node.pop("index", None)
        for slot in node.get("inputs") or []:
            if isinstance(slot, dict):
                slot["link"] = None
    for data in group.links:
        origin, origin_slot, target, target_slot = data[:4]
        if not (0 <= origin < len(inner) and 0 <= target < len(inner)):
            continue
        link_id = next(ids)
        kind = data[5] if len(data) > 5 else "*"
        links.append([link_id, prefix + str(origin), origin_slot, prefix + str(target), target_slot, kind])
        _connect(inner[target], target_slot, link_id)
    _pass_values(instance, group, inner)
    _rewire(instance, group, inner, links)
    return inner


def _connect(node: dict[str, Any], slot: int, link_id: int) -> None:
    slots = node.get("inputs")
    if isinstance(slots, list) and 0 <= slot < len(slots) and isinstance(slots[slot], dict):
        slots[slot]["link"] = link_id


def _group_spec(group: GroupDef) -> NodeSpec:
    """The group's widgets as a node definition, so its widgets_values are read like any node's."""
    return NodeSpec(
        id=f"workflow>{group.name}",
        display_name=group.name,
        category="group nodes",
        description="",
        version="",
        inputs=tuple(entry.spec for entry in group.inputs.values()),
        outputs=(),
        output_node=False,
        python_module="",
        cls=GroupDef,
        invoke=_not_runnable,
    )


def _not_runnable(instance: Any, inputs: dict[str, Any], context: Any) -> Any:
    raise RuntimeError("a group node's definition only describes its widgets; its inner nodes run")


def _pass_values(instance: dict[str, Any], group: GroupDef, inner: list[dict[str, Any]]) -> None:
    """The instance's widget values replace those of the inner widgets they stand for."""
    spec = _group_spec(group)
    if not any(w.input is not None for w in layout(spec)):
        return
    stored = instance.get("widgets_values")
    values = stored_values(spec, stored if isinstance(stored, (list, dict)) else None)
    for name, value in values.items():
        entry = group.inputs[name]
        node = inner[entry.index]
        if node.get("type") == PRIMITIVE:
            own = node.get("widgets_values")
            node["widgets_values"] = [value, *(own[1:] if isinstance(own, list) else [])]
        else:
            node.setdefault(OVERRIDES, {})[entry.inner] = value


def _rewire(
    instance: dict[str, Any], group: GroupDef, inner: list[dict[str, Any]], links: list[list[Any]]
) -> None:
    """Outer links into the instance go to the inner inputs they stand for; links out of it start at
    the inner outputs. A link into an input the definition does not have is dropped."""
    shown = _inputs(instance)
    by_link = {slot.get("link"): (n, slot) for n, slot in enumerate(shown) if isinstance(slot, dict)}
    keep: list[list[Any]] = []
    for data in links:
        if str(data[3]) == str(instance["id"]) and str(data[1]) != str(instance["id"]):
            entry = _target(group, *by_link.get(data[0], (data[4], {})))
            if entry is None:
                continue
            node = inner[entry.index]
            slot = _input_slot(node, entry)
            data[3], data[4] = node["id"], slot
            _connect(node, slot, data[0])
        elif str(data[1]) == str(instance["id"]):
            if not isinstance(data[2], int) or not 0 <= data[2] < len(group.outputs):
                raise _error(
                    instance, f"a link starts at output {data[2]}, which group node {group.name!r} lacks"
                )
            index, slot = group.outputs[data[2]]
            data[1], data[2] = inner[index]["id"], slot
        keep.append(data)
    links[:] = keep


def _target(group: GroupDef, number: Any, slot: dict[str, Any]) -> GroupInput | None:
    """The group input an instance input stands for: a widget shown as an input by its name, else by
    its number."""
    widget = slot.get("widget")
    name = widget.get("name") if isinstance(widget, dict) else None
    if isinstance(name, str) and name in group.inputs:
        return group.inputs[name]
    if isinstance(number, int) and 0 <= number < len(group.numbered):
        return group.numbered[number]
    return None


def _input_slot(node: dict[str, Any], entry: GroupInput) -> int:
    """The inner input slot for a group input; a widget with no slot yet gets one (as the front end
    gives every widget a socket)."""
    slots = node.setdefault("inputs", [])
    if entry.slot >= 0 and entry.slot < len(slots):
        return entry.slot
    found = _find(slots, entry.inner, widget=False)
    if found >= 0:
        return found
    slots.append(
        {"name": entry.inner, "type": entry.spec.type, "widget": {"name": entry.inner}, "link": None}
    )
    return len(slots) - 1
