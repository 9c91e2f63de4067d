"""UI-format workflows (schema 0.4, as ComfyUI's front end saves them) written compactly in tests.

Each node is given its `widgets_values` exactly as the front end stores them — positional, with the
front end's extra values such as "control after generate" after a seed and "image" (the upload button)
after LoadImage's file — and its links by input name. Socket names and types come from the registry,
as the front end takes them from /object_info; widget order is what the test writes by hand, so the
conversion's own layout rules are checked, not reused.
"""

from __future__ import annotations

from typing import Any

from engine.registry import NodeRegistry

Source = tuple[int, int]  # (node id, output slot)


class UiWorkflow:
    def __init__(self, registry: NodeRegistry) -> None:
        self.registry = registry
        self.nodes: list[dict[str, Any]] = []
        self.links: list[list[Any]] = []

    def add(self, node_type: str, widgets: list[Any], **inputs: Source) -> int:
        """Append a node; `inputs` maps an input name to the (node, slot) feeding it. Returns its id."""
        spec = self.registry.get(node_type)
        assert spec is not None, f"{node_type} is not registered"
        node_id = len(self.nodes) + 1
        types = {item.name: item.type for item in spec.inputs}
        slots = []
        for name, (origin, slot) in inputs.items():
            link_id = len(self.links) + 1
            self.links.append([link_id, origin, slot, node_id, len(slots), types[name]])
            self.nodes[origin - 1]["outputs"][slot]["links"].append(link_id)
            slots.append({"name": name, "type": types[name], "link": link_id})
        self.nodes.append(
            {
                "id": node_id,
                "type": node_type,
                "pos": [200 * node_id, 0],
                "size": [200, 80],
                "flags": {},
                "order": node_id,
                "mode": 0,
                "inputs": slots,
                "outputs": [{"name": o.name, "type": o.type, "links": []} for o in spec.outputs],
                "properties": {"Node name for S&R": node_type},
                "widgets_values": widgets,
            }
        )
        return node_id

    def workflow(self) -> dict[str, Any]:
        return {
            "last_node_id": len(self.nodes),
            "last_link_id": len(self.links),
            "nodes": self.nodes,
            "links": self.links,
            "groups": [],
            "config": {},
            "extra": {},
            "version": 0.4,
        }
