"""Legacy group nodes (`extra.groupNodes`, node type `workflow>Name` or `workflow/Name`) unpacked into
plain nodes before conversion, as the front end's group-node extension does when it queues them.

The group's definition (its inputs, widgets and outputs) is rebuilt by engine.ui_workflow.groupdefs.
An instance's inner nodes get the ids `<instance id>:<index>`, its widget values override the inner
widgets they stand for, its input n feeds the inner input numbered n, and its output n is the inner
output it stands for. A muted or bypassed instance is left whole: the front end never sends its
inner nodes, and a bypassed one passes its inputs on by type like any node.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from itertools import count
from typing import Any

from engine.registry import NodeRegistry
from engine.spec import NodeSpec
from engine.ui_workflow.groupdefs import (
    GroupDef,
    GroupInput,
    build_group,
    find_input,
    inner_inputs,
    instance_error,
)
from engine.ui_workflow.model import OVERRIDES, PRIMITIVE
from engine.ui_workflow.subgraphs import link_row
from engine.ui_workflow.widgets import layout, stored_values

PREFIXES = ("workflow>", "workflow/")
MUTED_MODES = (2, 4)  # never, bypass


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
            built[name] = build_group(name, groups[name], registry, instance)
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
    shown = inner_inputs(instance)
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
                raise instance_error(
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
    found = find_input(slots, entry.inner, widget=False)
    if found >= 0:
        return found
    slots.append(
        {"name": entry.inner, "type": entry.spec.type, "widget": {"name": entry.inner}, "link": None}
    )
    return len(slots) - 1
