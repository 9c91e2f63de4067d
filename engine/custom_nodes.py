"""Loading custom node packs from `custom_nodes/` (and extra folders) into a registry.

A pack is a folder with `__init__.py` or a single `.py` file. It exports ComfyUI's
`NODE_CLASS_MAPPINGS` (optionally `NODE_DISPLAY_NAME_MAPPINGS`, `WEB_DIRECTORY`) and/or defines
native Loom nodes (`engine.native.Node` subclasses). Names ending in `.disabled` are skipped. A pack
that fails to import, or declares a node that fails registration, is reported and none of its nodes
are registered; a node id that a built-in node or an earlier pack owns is not replaced but reported.
Packs' `requirements.txt` files are never installed here: a missing dependency is reported.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from engine import comfy_compat
from engine import folders as folder_config
from engine.native import Node
from engine.registry import NodeRegistry
from engine.spec import NodeSpec

logger = logging.getLogger(__name__)
PackState = Literal["loaded", "failed", "disabled"]


@dataclass
class PackStatus:
    name: str
    path: str
    status: PackState
    error: str | None = None
    import_seconds: float = 0.0
    nodes: list[str] = field(default_factory=list)
    # Node ids this pack declares that another pack or a built-in node already owns (not loaded).
    conflicts: list[str] = field(default_factory=list)
    web_directory: str | None = None


@dataclass
class PackReport:
    """What the server publishes about packs (status, error, import time, nodes, web folder)."""

    packs: list[PackStatus] = field(default_factory=list)

    def to_json(self) -> list[dict[str, Any]]:
        return [asdict(pack) for pack in self.packs]

    def web_directories(self) -> dict[str, Path]:
        """Pack name -> folder served under `/extensions/<pack>/`, for loaded packs that have one."""
        return {p.name: Path(p.web_directory) for p in self.packs if p.status == "loaded" and p.web_directory}

    def get(self, name: str) -> PackStatus | None:
        return next((p for p in self.packs if p.name == name), None)


def load_custom_nodes(
    registry: NodeRegistry, folders: list[Path] | None = None, disable_all: bool = False
) -> PackReport:
    """Import every pack in `folders` (default: the configured ones, `custom_nodes/` and those of
    --extra-model-paths-config files) into `registry`."""
    report = PackReport()
    if disable_all:
        logger.info("Custom node packs are disabled (--disable-all-custom-nodes)")
        return report
    comfy_compat.install()
    for folder in folders if folders is not None else folder_config.current().custom_nodes:
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir(), key=lambda p: p.name.lower()):
            if _is_pack(path):
                report.packs.append(load_pack(registry, path))
    if report.packs:
        logger.info("\nImport times for custom nodes:")  # ComfyUI's heading for the list below
    for pack in sorted(report.packs, key=lambda p: -p.import_seconds):
        outcome = "" if pack.status == "loaded" else f" ({pack.status.upper()})"
        logger.info("%8.1f seconds%s: %s", pack.import_seconds, outcome, pack.path)
    return report


def _is_pack(path: Path) -> bool:
    if path.name.startswith((".", "__")) or path.name.endswith(".disabled"):
        return False
    if path.is_dir():
        return (path / "__init__.py").is_file()
    return path.suffix == ".py"


def load_pack(registry: NodeRegistry, path: Path) -> PackStatus:
    """Import one pack and register its nodes, all or none; never raises for the pack's faults."""
    comfy_compat.install()
    name = path.stem if path.is_file() else path.name
    status = PackStatus(name=name, path=str(path), status="failed")
    started = time.perf_counter()
    try:
        module = _import(path, name)
        specs = _describe(module, f"custom_nodes.{name}")
    except (Exception, SystemExit) as exc:
        status.error = _describe_failure(exc, path)
        logger.warning("Cannot load custom node pack %s: %s", path, status.error)
        status.import_seconds = time.perf_counter() - started
        return status
    for spec in specs:
        if spec.id in registry:
            status.conflicts.append(spec.id)
            owner = registry.get(spec.id).python_module  # type: ignore[union-attr]
            logger.warning(
                "Pack %s: node %s is already provided by %s; keeping that one", name, spec.id, owner
            )
        else:
            registry.add(spec)
            status.nodes.append(spec.id)
    status.status = "loaded"
    status.web_directory = _web_directory(module, path)
    status.import_seconds = time.perf_counter() - started
    return status


def _import(path: Path, name: str) -> ModuleType:
    """Import a pack under its own name (a prefixed one if that name is taken by another module)."""
    init = path / "__init__.py" if path.is_dir() else path
    module_name = name.replace(".", "_")
    existing = sys.modules.get(module_name)
    if existing is not None and getattr(existing, "__file__", None) == str(init):
        return existing  # already imported in this process (tests load packs repeatedly)
    if existing is not None:
        module_name = f"loom_pack_{module_name}"
    locations = [str(path)] if path.is_dir() else None
    spec = importlib.util.spec_from_file_location(module_name, init, submodule_search_locations=locations)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {init}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        for loaded in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
            del sys.modules[loaded]
        raise
    return module


def _describe(module: ModuleType, python_module: str) -> list[NodeSpec]:
    """NodeSpecs of everything the pack exports, checked in a scratch registry (so: all or none)."""
    scratch = NodeRegistry()
    package = module.__name__
    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, Node)
            and value is not Node
            and (value.__module__ == package or value.__module__.startswith(package + "."))
        ):
            scratch.register(value)
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None) or {}
    if not isinstance(mappings, dict):
        raise TypeError("NODE_CLASS_MAPPINGS must be a dict of node id -> class")
    names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    for node_id, cls in mappings.items():
        scratch.register(cls, node_id, display_name=names.get(node_id), python_module=python_module)
    return list(scratch)


def _web_directory(module: ModuleType, path: Path) -> str | None:
    web = getattr(module, "WEB_DIRECTORY", None)
    if not isinstance(web, str) or not path.is_dir():
        return None
    folder = (path / web).resolve()
    return str(folder) if folder.is_dir() else None


def _describe_failure(exc: BaseException, path: Path) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    if isinstance(exc, ModuleNotFoundError) and (path / "requirements.txt").is_file():
        text += (
            f"\nThe pack lists its dependencies in {path / 'requirements.txt'}; Loom does not install "
            "them. Install them yourself after checking they do not change Loom's pinned versions."
        )
    return text
