"""Loom's built-in nodes, one subpackage per ComfyUI category and one module per family of nodes.

Every module under this package is registered: a new family of nodes is a new file, nothing else.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from engine.registry import NodeRegistry
from nodes.image.basic import MAX_RESOLUTION

# Packs written for ComfyUI import MAX_RESOLUTION from its `nodes` module; Loom's answers the same.
__all__ = ["MAX_RESOLUTION", "builtin_modules", "builtin_registry"]


def builtin_modules() -> list[ModuleType]:
    """The modules that define built-in nodes, in a stable order."""
    names = sorted(info.name for info in pkgutil.walk_packages(__path__, f"{__name__}.") if not info.ispkg)
    return [importlib.import_module(name) for name in names]


def builtin_registry() -> NodeRegistry:
    registry = NodeRegistry()
    for module in builtin_modules():
        registry.register_module(module)
    return registry
