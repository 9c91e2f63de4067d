"""ComfyUI's `comfy_extras.nodes_*` modules: each answers with the ComfyUI-convention classes of the
built-in nodes Loom has from that module (and its `NODE_CLASS_MAPPINGS`). A module ComfyUI has is
importable even when Loom has none of its nodes, so a pack fails only on a name it really uses, with
an error that names it."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Any

from engine.comfy_compat.function_names import COMFY_MODULE_OF

MODULES = frozenset(m for m in COMFY_MODULE_OF.values() if m.startswith("comfy_extras."))


class _NodeModule(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        from engine.comfy_compat.builtin_classes import module_classes
        from engine.comfy_compat.extras_helpers import HELPERS

        classes = module_classes(module.__name__)
        module.__dict__.update(classes)
        module.__dict__.update(HELPERS.get(module.__name__, {}))
        module.NODE_CLASS_MAPPINGS = dict(classes)  # type: ignore[attr-defined]
        module.__doc__ = f"Loom's built-in nodes that ComfyUI defines in {module.__name__}."


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname in MODULES:
            return importlib.machinery.ModuleSpec(fullname, _NodeModule())
        return None


if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
    sys.meta_path.append(_Finder())
