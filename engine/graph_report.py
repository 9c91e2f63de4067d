"""What a rejected prompt reports, bounded: node_errors for the first nodes only, a few errors each,
a capped summary and capped strings, so a huge invalid graph gets a small answer in linear time."""

from __future__ import annotations

from typing import Any

import networkx as nx

Error = dict[str, Any]

MAX_REPORTED_NODES = 100
MAX_ERRORS_PER_NODE = 20
MAX_SUMMARY_LINES = 50
MAX_DETAIL_CHARS = 1000


def natural_key(node_id: str) -> tuple[int, str]:
    return (int(node_id), "") if node_id.isdigit() else (1 << 62, node_id)


def reported_errors(
    graph: nx.DiGraph, prompt: dict[str, Any], outputs: list[str], errors: dict[str, list[Error]]
) -> dict[str, dict[str, Any]]:
    """ComfyUI's node_errors for at most MAX_REPORTED_NODES nodes (in node order), so that the work
    and the answer stay proportional to the graph, not to its square."""
    reported = sorted(errors, key=natural_key)[:MAX_REPORTED_NODES]
    dependents: dict[str, list[str]] = {node_id: [] for node_id in reported}
    if len(outputs) <= len(reported):
        for output in outputs:  # one walk up from each output
            for node_id in _upstream_of(graph, output):
                if node_id in dependents:
                    dependents[node_id].append(output)
    else:
        output_set = set(outputs)
        for node_id in reported:  # one walk down from each reported node
            downstream = downstream_of(graph, [node_id])
            dependents[node_id] = [o for o in outputs if o in downstream and o in output_set]
    return {
        node_id: {
            "errors": [_bounded(e) for e in errors[node_id][:MAX_ERRORS_PER_NODE]],
            "dependent_outputs": dependents[node_id],
            "class_type": prompt[node_id]["class_type"],
        }
        for node_id in reported
    }


def summary(lines: list[str]) -> str:
    shown = [line[:MAX_DETAIL_CHARS] for line in lines[:MAX_SUMMARY_LINES]]
    if len(lines) > MAX_SUMMARY_LINES:
        shown.append(f"... and {len(lines) - MAX_SUMMARY_LINES} more errors")
    return "\n".join(shown)


def _bounded(error: Error) -> Error:
    """An error whose details or received value is huge (a 1 MB string, say) keeps a prefix of it."""
    details = error.get("details")
    if isinstance(details, str) and len(details) > MAX_DETAIL_CHARS:
        error = {**error, "details": details[:MAX_DETAIL_CHARS] + "..."}
    extra = error.get("extra_info") or {}
    if "received_value" in extra and len(repr(extra["received_value"])) > MAX_DETAIL_CHARS:
        shown = repr(extra["received_value"])[:MAX_DETAIL_CHARS] + "..."
        error = {**error, "extra_info": {**extra, "received_value": shown}}
    return error


def _upstream_of(graph: nx.DiGraph, start: str) -> set[str]:
    found: set[str] = set()
    stack = [start]
    while stack:
        node_id = stack.pop()
        if node_id not in found:
            found.add(node_id)
            stack.extend(graph.predecessors(node_id))
    return found


def downstream_of(graph: nx.DiGraph, starts: Any) -> set[str]:
    found: set[str] = set()
    stack = list(starts)
    while stack:
        node_id = stack.pop()
        if node_id not in found:
            found.add(node_id)
            stack.extend(graph.successors(node_id))
    return found
