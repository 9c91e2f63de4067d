"""Loading custom node packs from `custom_nodes/` (and extra folders) into a registry.

A pack is a folder with `__init__.py` or a single `.py` file. It exports ComfyUI's
`NODE_CLASS_MAPPINGS` (optionally `NODE_DISPLAY_NAME_MAPPINGS`, `WEB_DIRECTORY`) and/or defines
native Loom nodes (`engine.native.Node` subclasses), and/or a V3 `comfy_entrypoint()` whose
extension lists node classes. Names ending in `.disabled` are skipped.

Registration is as lenient as ComfyUI's and reported as clearly as Loom can: a pack that fails to
import is reported with its error (a missing ComfyUI module or name is called a gap in Loom's
compatibility, not a missing requirement); each node registers on its own, so one node that cannot
be described is reported under `node_errors` and never drops its pack; what Loom's checks dislike in
a declaration ComfyUI accepts is a warning on that node (`warnings`). A node id that a built-in node
or an earlier pack owns is not replaced but reported. Packs' `requirements.txt` files are never
installed here: a missing dependency is reported.
"""

from __future__ import annotations

import importlib.util
import inspect
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
from engine.pack_guard import PackImportError, crash_marker, import_guarded, quarantined
from engine.registry import NodeRegistry
from engine.settle import settled
from engine.spec import NodeDefinitionError, NodeSpec

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
    # Node id -> what Loom's checks dislike in a declaration it registered anyway.
    warnings: dict[str, list[str]] = field(default_factory=dict)
    # Node id -> why that one node could not be registered (the rest of the pack is).
    node_errors: dict[str, str] = field(default_factory=dict)


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
    registry: NodeRegistry,
    folders: list[Path] | None = None,
    disable_all: bool = False,
    state_dir: Path | None = None,
) -> PackReport:
    """Import every pack in `folders` (default: the configured ones, `custom_nodes/` and those of
    --extra-model-paths-config files) into `registry`. With a `state_dir`, a pack that killed the
    process while importing is skipped at the next start (engine.pack_guard)."""
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
                report.packs.append(load_pack(registry, path, state_dir))
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


def load_pack(registry: NodeRegistry, path: Path, state_dir: Path | None = None) -> PackStatus:
    """Import one pack and register each of its nodes; never raises for the pack's faults."""
    comfy_compat.install()
    name = path.stem if path.is_file() else path.name
    status = PackStatus(name=name, path=str(path), status="failed")
    started = time.perf_counter()
    try:
        if skipped := quarantined(state_dir, path):
            raise PackImportError(skipped)
        with crash_marker(state_dir, path):
            module, specs = import_guarded(name, lambda: _import_and_describe(path, name, status))
    except (Exception, SystemExit) as exc:
        status.error = _describe_failure(exc, path)
        logger.warning("Cannot load custom node pack %s: %s", path, status.error)
        status.import_seconds = time.perf_counter() - started
        return status
    for node_id, error in status.node_errors.items():
        logger.warning("Pack %s: node %s is not registered: %s", name, node_id, error)
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
            comfy_compat.record_pack_node(spec.id, spec.cls)
            if spec.warnings:
                status.warnings[spec.id] = list(spec.warnings)
                logger.info("Pack %s: node %s registered with warnings: %s", name, spec.id, spec.warnings)
    status.status = "loaded"
    status.web_directory = _web_directory(module, path)
    if status.web_directory:
        comfy_compat.extension_web_dirs[name] = status.web_directory
    status.import_seconds = time.perf_counter() - started
    return status


def _import_and_describe(path: Path, name: str, status: PackStatus) -> tuple[ModuleType, list[NodeSpec]]:
    module = _import(path, name)
    return module, _describe(module, f"custom_nodes.{name}", status)


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


def _describe(module: ModuleType, python_module: str, status: PackStatus) -> list[NodeSpec]:
    """NodeSpecs of everything the pack exports, each described on its own in a scratch registry; a
    node that cannot be described goes to `status.node_errors`."""
    scratch = NodeRegistry()
    package = module.__name__

    def register(node_id: str, cls: Any, **details: Any) -> None:
        try:
            scratch.register(cls, node_id, **details)
        except NodeDefinitionError as exc:
            status.node_errors[node_id] = str(exc)
        except Exception as exc:  # a pack's class can fail in any way while it is read
            status.node_errors[node_id] = f"{type(exc).__name__}: {exc}"

    for value in list(vars(module).values()):
        if (
            isinstance(value, type)
            and issubclass(value, Node)
            and value is not Node
            and (value.__module__ == package or value.__module__.startswith(package + "."))
        ):
            register(value.node_id or value.__name__, value)
    mappings = getattr(module, "NODE_CLASS_MAPPINGS", None) or {}
    if not isinstance(mappings, dict):
        raise TypeError("NODE_CLASS_MAPPINGS must be a dict of node id -> class")
    names = getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", None) or {}
    for node_id, cls in mappings.items():
        register(node_id, cls, display_name=names.get(node_id), python_module=python_module)
    entrypoint = getattr(module, "comfy_entrypoint", None)
    # As ComfyUI: the V3 entry point is used by packs that have no NODE_CLASS_MAPPINGS.
    if callable(entrypoint) and not mappings:
        for cls in _entrypoint_nodes(entrypoint):
            node_id = cls.GET_SCHEMA().node_id
            register(node_id, cls, python_module=python_module)
    return list(scratch)


def _entrypoint_nodes(entrypoint: Any) -> list[Any]:
    """ComfyUI's V3 loading: `await comfy_entrypoint()` gives an extension; `await on_load()`, then
    `await get_node_list()`. Runs on its own event loop (the server's may be running in this thread)."""

    async def collect() -> list[Any]:
        extension = entrypoint()
        if inspect.isawaitable(extension):
            extension = await extension
        await extension.on_load()
        return list(await extension.get_node_list())

    return list(settled(collect()))


def _web_directory(module: ModuleType, path: Path) -> str | None:
    web = getattr(module, "WEB_DIRECTORY", None)
    if not isinstance(web, str) or not path.is_dir():
        return None
    folder = (path / web).resolve()
    return str(folder) if folder.is_dir() else None


def _describe_failure(exc: BaseException, path: Path) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    gap = comfy_compat.missing_comfy_name(exc)
    if gap is not None:
        return (
            f"{text}\n{gap} is part of ComfyUI's own Python surface, which Loom does not provide yet: a gap"
            " in Loom's ComfyUI compatibility, not a requirement the pack forgot. Installing the pack's"
            " requirements will not fix it; see docs/custom-nodes.md for what Loom provides."
        )
    if isinstance(exc, ModuleNotFoundError) and (path / "requirements.txt").is_file():
        text += (
            f"\nThe pack lists its dependencies in {path / 'requirements.txt'}; Loom does not install "
            "them. Install them yourself after checking they do not change Loom's pinned versions."
        )
    return text
