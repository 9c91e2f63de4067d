"""Shared fixtures: isolated folders, a registry of the built-in nodes plus test nodes, an executor."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import folders
from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from nodes import builtin_registry
from tests.engine import counting_nodes


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Two cores are shared by parallel work; one thread per process keeps timings steady, and the
    same thread count for every run keeps float results comparable bit for bit (the automatic policy
    would pick by how busy the cores are at that moment). Tests of the policy configure their own."""
    import torch

    from engine import threads

    torch.set_num_threads(1)
    threads.configure(1)
    yield
    threads.configure(None)


@pytest.fixture
def loom_folders(tmp_path: Path) -> Iterator[Folders]:
    configured = Folders.under(tmp_path)
    for path in (configured.output, configured.input, configured.temp):
        path.mkdir(parents=True)
    previous = folders.current()
    folders.configure(configured)
    yield configured
    folders.configure(previous)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder whose checkpoints/ holds tiny SD1.x, SD2.x (v-prediction) and SDXL files."""
    from tests.nodes.sd_fixtures import write_tiny_checkpoints

    root = tmp_path_factory.mktemp("models")
    write_tiny_checkpoints(root / "checkpoints")
    return root


@pytest.fixture
def sd_folders(loom_folders: Folders, tiny_models_dir: Path) -> Folders:
    loom_folders.models = Folders.under(tiny_models_dir.parent, models_base=tiny_models_dir).models
    return loom_folders


@pytest.fixture
def registry() -> NodeRegistry:
    registry = builtin_registry()
    registry.register_module(counting_nodes)
    counting_nodes.CALLS.clear()
    return registry


@pytest.fixture
def executor(registry: NodeRegistry, loom_folders: Folders) -> Executor:
    return Executor(registry)


class Recorder:
    """An event listener that keeps every event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, event: str, data: dict[str, Any]) -> None:
        self.events.append((event, data))

    def names(self) -> list[str]:
        return [name for name, _ in self.events]

    def of(self, name: str) -> list[dict[str, Any]]:
        return [data for event, data in self.events if event == name]


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()
