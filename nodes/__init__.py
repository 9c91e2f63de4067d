"""Loom's built-in nodes, one subpackage per ComfyUI category and one module per family of nodes.

Every module under this package is registered: a new family of nodes is a new file, nothing else.

The package also answers for ComfyUI's `nodes` module, which node packs import: every built-in node
under ComfyUI's name as a ComfyUI-convention class (`nodes.SaveImage`, `nodes.CLIPTextEncode`...),
`NODE_CLASS_MAPPINGS` (built-ins, then each pack's nodes as they load), `NODE_DISPLAY_NAME_MAPPINGS`,
`EXTENSION_WEB_DIRS`, `common_ksampler`, `interrupt_processing`, `before_node_execution` and
`MAX_RESOLUTION`. They are built on first use (`engine.comfy_compat.builtin_classes`), so importing
this package never imports the node modules' dependencies in a cycle.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType
from typing import Any

from engine.registry import NodeRegistry
from nodes.image.basic import MAX_RESOLUTION

__all__ = ["MAX_RESOLUTION", "builtin_modules", "builtin_registry"]

_FUNCTIONS = ("common_ksampler", "interrupt_processing", "before_node_execution")


def builtin_modules() -> list[ModuleType]:
    """The modules that define built-in nodes, in a stable order."""
    names = sorted(info.name for info in pkgutil.walk_packages(__path__, f"{__name__}.") if not info.ispkg)
    return [importlib.import_module(name) for name in names]


def builtin_registry() -> NodeRegistry:
    registry = NodeRegistry()
    for module in builtin_modules():
        registry.register_module(module)
    return registry


def __getattr__(name: str) -> Any:
    """ComfyUI's names, made on first use and then kept as ordinary module attributes."""
    if name.startswith("__"):
        raise AttributeError(name)
    from engine import comfy_compat
    from engine.comfy_compat import builtin_classes

    value: Any
    if name == "NODE_CLASS_MAPPINGS":
        value = {**builtin_classes.builtin_classes(), **comfy_compat.pack_classes}
    elif name == "NODE_DISPLAY_NAME_MAPPINGS":
        value = dict(builtin_classes.builtin_display_names())
    elif name == "EXTENSION_WEB_DIRS":
        value = comfy_compat.extension_web_dirs
    elif name in _FUNCTIONS:
        value = getattr(builtin_classes, name)
    elif name in builtin_classes.builtin_classes():
        value = builtin_classes.builtin_classes()[name]
    else:
        raise AttributeError(f"module 'nodes' has no attribute {name!r}")
    globals()[name] = value
    return value
