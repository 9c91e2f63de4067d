"""Subgraphs (the front end's `definitions.subgraphs`) flattened into plain nodes before conversion.

A subgraph instance is a node whose type is a subgraph's id. As the front end does when it queues, its
inner nodes take its place under the ids `<instance id>:<inner id>` (nested subgraphs repeat this), and
its links are rewired: an inner link from the subgraph's input node (id -10) continues the outer link
into that input, or, when the input is not linked, is dropped so a widget value applies: the instance's
own value for that input when it stores one (`widgets_values_named`, or `widgets_values` holding one
value per subgraph input: the Flux 3 Klein templates keep the prompt and sampler settings there), else
the inner node's own (the front end keeps promoted widget values on the inner nodes,
`properties.proxyWidgets`); an
inner link into the output node (id -20) feeds every outer link out of that output. A muted or bypassed
instance mutes or bypasses what it holds.
"""

from __future__ import annotations

import copy
from itertools import count
from typing import Any

from engine.ui_workflow.model import OVERRIDES

INPUT_NODE = -10
OUTPUT_NODE = -20
# Nested subgraphs deeper than this are taken as a cycle.
MAX_DEPTH = 16


def flatten(workflow: dict[str, Any]) -> dict[str, Any]:
    """The workflow with every subgraph instance replaced by its inner nodes (unchanged if it has none)."""
    if not isinstance(workflow, dict):
        return workflow
    definitions = workflow.get("definitions")
    subgraphs = definitions.get("subgraphs") if isinstance(definitions, dict) else None
    if not isinstance(subgraphs, list) or not subgraphs:
        return workflow
    by_id = {s["id"]: s for s in subgraphs if isinstance(s, dict) and isinstance(s.get("id"), str)}
    nodes = copy.deepcopy([n for n in workflow.get("nodes", []) if isinstance(n, dict)])
    links = [x for x in (link_row(raw) for raw in workflow.get("links", [])) if x]
    ids = count(1 + max((x[0] for x in links if isinstance(x[0], int)), default=0))
    for _ in range(MAX_DEPTH):
        instance = next((n for n in nodes if n.get("type") in by_id), None)
        if instance is None:
            break
        nodes, links = _expand(instance, by_id[instance["type"]], nodes, links, ids)
    out = {k: v for k, v in workflow.items() if k not in ("nodes", "links")}
    out["nodes"], out["links"] = nodes, links
    return out


def link_row(raw: Any) -> list[Any] | None:
    """A link as [id, origin, origin slot, target, target slot, type] from either stored form."""
    if isinstance(raw, list) and len(raw) >= 5:
        return list(raw[:6]) + [None] * (6 - len(raw[:6]))
    if isinstance(raw, dict):
        keys = ("id", "origin_id", "origin_slot", "target_id", "target_slot", "type")
        return [raw.get(k) for k in keys]
    return None


def _same(a: Any, b: Any) -> bool:
    return str(a) == str(b)


def _expand(
    instance: dict[str, Any],
    subgraph: dict[str, Any],
    nodes: list[dict[str, Any]],
    links: list[list[Any]],
    ids: Any,
) -> tuple[list[dict[str, Any]], list[list[Any]]]:
    prefix = f"{instance['id']}:"
    inner_nodes = copy.deepcopy([n for n in subgraph.get("nodes", []) if isinstance(n, dict)])
    for node in inner_nodes:
        node["id"] = prefix + str(node["id"])
        if instance.get("mode") in (2, 4):
            node["mode"] = instance["mode"]
    inner_links = [x for x in (link_row(raw) for raw in subgraph.get("links", [])) if x]
    into = _links_into(instance, subgraph, links)
    out_of: dict[int, list[list[Any]]] = {}
    for x in links:
        if _same(x[1], instance["id"]):
            out_of.setdefault(x[2], []).append(x)
    kept = [x for x in links if not _same(x[1], instance["id"]) and not _same(x[3], instance["id"])]
    rest = [n for n in nodes if n is not instance]
    everything = rest + inner_nodes
    new: list[list[Any]] = []
    for _, origin, origin_slot, target, target_slot, kind in inner_links:
        sources = [(prefix + str(origin), origin_slot)]
        if origin == INPUT_NODE:
            outer = into.get(origin_slot)
            sources = [(outer[1], outer[2])] if outer else []
        targets = [(prefix + str(target), target_slot)]
        if target == OUTPUT_NODE:
            targets = [(x[3], x[4]) for x in out_of.get(target_slot, [])]
        for source in sources:
            for goal in targets:
                new.append([next(ids), source[0], source[1], goal[0], goal[1], kind])
    _relink(everything, new, inner_links, prefix, instance)
    _pass_values(everything, inner_links, prefix, _instance_values(instance, subgraph), into)
    return everything, kept + new


def _instance_values(instance: dict[str, Any], subgraph: dict[str, Any]) -> dict[int, Any]:
    """{subgraph input slot: the value the instance stores for it}: by name, or by position when the
    instance stores one value per subgraph input."""
    inputs = [i for i in subgraph.get("inputs") or [] if isinstance(i, dict)]
    named = instance.get("widgets_values_named")
    if isinstance(named, dict):
        return {k: named[i.get("name")] for k, i in enumerate(inputs) if i.get("name") in named}
    values = instance.get("widgets_values")
    if isinstance(values, list) and inputs and len(values) == len(inputs):
        return dict(enumerate(values))
    return {}


def _pass_values(
    nodes: list[dict[str, Any]],
    inner_links: list[list[Any]],
    prefix: str,
    values: dict[int, Any],
    into: dict[Any, list[Any]],
) -> None:
    """Give each inner widget fed by an unlinked subgraph input the instance's value for that input."""
    by_id = {str(n["id"]): n for n in nodes}
    for x in inner_links:
        if x[1] != INPUT_NODE or x[2] in into or x[2] not in values or str(x[3]) == str(OUTPUT_NODE):
            continue
        target = by_id.get(prefix + str(x[3]))
        slots = target.get("inputs", []) if target else []
        if target is None or not isinstance(x[4], int) or x[4] >= len(slots):
            continue
        slot = slots[x[4]] if isinstance(slots[x[4]], dict) else {}
        widget = slot.get("widget")
        name = widget.get("name") if isinstance(widget, dict) else None
        name = name or slot.get("name")
        if isinstance(name, str):
            target.setdefault(OVERRIDES, {})[name] = values[x[2]]


def _links_into(
    instance: dict[str, Any], subgraph: dict[str, Any], links: list[list[Any]]
) -> dict[Any, list[Any]]:
    """{subgraph input slot: the outer link into it}. The instance's own input list may hold only some
    of the subgraph's inputs (image_qwen_Image_2512_controlnet's shows 5 of 11), so an outer link's slot
    is matched to the subgraph input of the same name, as the front end does; by position otherwise."""
    named = {i.get("name"): k for k, i in enumerate(subgraph.get("inputs") or []) if isinstance(i, dict)}
    shown = instance.get("inputs") or []
    into: dict[Any, list[Any]] = {}
    for x in links:
        if not _same(x[3], instance["id"]):
            continue
        slot = x[4]
        entry = shown[slot] if isinstance(slot, int) and 0 <= slot < len(shown) else None
        name = entry.get("name") if isinstance(entry, dict) else None
        into[named.get(name, slot)] = x
    return into


def _relink(
    nodes: list[dict[str, Any]],
    new: list[list[Any]],
    inner_links: list[list[Any]],
    prefix: str,
    instance: dict[str, Any],
) -> None:
    """Point node inputs (and origin outputs) at the new links; inner inputs fed by an unlinked subgraph
    input lose their link, so their widget value is used."""
    by_id = {str(n["id"]): n for n in nodes}
    for x in inner_links:
        if x[1] == INPUT_NODE and str(x[3]) != str(OUTPUT_NODE):
            target = by_id.get(prefix + str(x[3]))
            slots = target.get("inputs", []) if target else []
            if isinstance(x[4], int) and x[4] < len(slots):
                slots[x[4]]["link"] = None
    for x in new:
        target = by_id.get(str(x[3]))
        slots = target.get("inputs", []) if target else []
        if isinstance(x[4], int) and x[4] < len(slots):
            slots[x[4]]["link"] = x[0]
