"""Loom's built-in nodes."""

from __future__ import annotations

from engine.registry import NodeRegistry
from nodes import conditioning, image, image_io, latent, loaders, primitives, sampling, vae
from nodes.image import MAX_RESOLUTION

# Packs written for ComfyUI import MAX_RESOLUTION from its `nodes` module; Loom's answers the same.
__all__ = ["BUILTIN_MODULES", "MAX_RESOLUTION", "builtin_registry"]

BUILTIN_MODULES = (primitives, image, image_io, loaders, conditioning, latent, sampling, vae)


def builtin_registry() -> NodeRegistry:
    registry = NodeRegistry()
    for module in BUILTIN_MODULES:
        registry.register_module(module)
    return registry
