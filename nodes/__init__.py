"""Loom's built-in nodes."""

from __future__ import annotations

from engine.registry import NodeRegistry
from nodes import image, image_io, primitives

BUILTIN_MODULES = (primitives, image, image_io)


def builtin_registry() -> NodeRegistry:
    registry = NodeRegistry()
    for module in BUILTIN_MODULES:
        registry.register_module(module)
    return registry
