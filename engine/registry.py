"""The registry of node classes and its `/object_info` export in ComfyUI's exact shape."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

from engine.comfy_convention import comfy_spec
from engine.native import Node, native_spec
from engine.spec import NodeDefinitionError, NodeSpec


class NodeRegistry:
    def __init__(self) -> None:
        self._specs: dict[str, NodeSpec] = {}

    def register(
        self,
        cls: type,
        node_id: str | None = None,
        *,
        display_name: str | None = None,
        python_module: str | None = None,
    ) -> NodeSpec:
        """Describe `cls` as a NodeSpec and add it; a bad declaration raises NodeDefinitionError."""
        if isinstance(cls, type) and issubclass(cls, Node):
            spec = native_spec(cls)
        elif hasattr(cls, "INPUT_TYPES"):
            spec = comfy_spec(node_id or cls.__name__, cls, display_name, python_module)
        else:
            raise NodeDefinitionError(node_id or str(getattr(cls, "__name__", cls)), "is not a node class")
        return self.add(spec)

    def add(self, spec: NodeSpec) -> NodeSpec:
        """Add an already described node; an id that is taken raises NodeDefinitionError."""
        if spec.id in self._specs:
            owner = self._specs[spec.id].python_module
            raise NodeDefinitionError(spec.id, f"a node with this id is already registered by {owner}")
        self._specs[spec.id] = spec
        return spec

    def register_module(self, module: ModuleType, python_module: str | None = None) -> list[NodeSpec]:
        """Register the native nodes a module defines and the classes in its NODE_CLASS_MAPPINGS."""
        specs = [
            self.register(value)
            for value in vars(module).values()
            if isinstance(value, type)
            and issubclass(value, Node)
            and value is not Node
            and value.__module__ == module.__name__
        ]
        names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {})
        for node_id, cls in getattr(module, "NODE_CLASS_MAPPINGS", {}).items():
            module_name = python_module or module.__name__
            specs.append(
                self.register(cls, node_id, display_name=names.get(node_id), python_module=module_name)
            )
        return specs

    def get(self, node_id: str) -> NodeSpec | None:
        return self._specs.get(node_id)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._specs

    def __iter__(self) -> Iterator[NodeSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def object_info(self) -> dict[str, dict[str, Any]]:
        return {spec.id: node_info(spec) for spec in self}


def node_info(spec: NodeSpec) -> dict[str, Any]:
    """One node as ComfyUI's `GET /object_info` publishes it."""
    sections: dict[str, dict[str, Any]] = {"required": {}}
    for item in spec.inputs:
        sections.setdefault(item.section, {})[item.name] = item.object_info()
    for name, kind in spec.published_hidden:
        sections.setdefault("hidden", {})[name] = kind
    info: dict[str, Any] = {
        "input": sections,
        "input_order": {section: list(entries) for section, entries in sections.items()},
        "output": [o.type for o in spec.outputs],
        "output_is_list": [o.is_list for o in spec.outputs],
        "output_name": [o.name for o in spec.outputs],
        "name": spec.id,
        "display_name": spec.display_name,
        "description": spec.description,
        "python_module": spec.python_module,
        "category": spec.category,
        "output_node": spec.output_node,
    }
    if any(o.tooltip for o in spec.outputs):
        info["output_tooltips"] = [o.tooltip for o in spec.outputs]
    info.update({key.lower(): True for key in spec.extra_info})
    return info
