"""A pytest plugin for pack authors: run workflows against a pack, with Loom's built-in nodes.

    def test_concat(loom_pack):
        pack = loom_pack(Path(__file__).parent.parent)      # the pack folder (or a .py file)
        result = pack.run({"1": {"class_type": "MyNode", "inputs": {...}}, ...})
        assert result.outputs["2"] == {...}

Each test gets folders of its own (input, output, temp, models under pytest's tmp_path).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import folders
from engine.custom_nodes import PackStatus, load_pack
from engine.executor import ExecutionResult, Executor
from engine.folders import Folders
from engine.graph import describe_errors, validate_prompt
from engine.registry import NodeRegistry


class PackHarness:
    """A registry with the built-in nodes and the loaded pack(s), and an executor over it."""

    def __init__(self, registry: NodeRegistry, folders: Folders) -> None:
        self.registry = registry
        self.folders = folders
        self.executor = Executor(registry)
        self.packs: list[PackStatus] = []
        self.events: list[tuple[str, dict[str, Any]]] = []

    def load(self, path: Path | str) -> PackStatus:
        status = load_pack(self.registry, Path(path))
        self.packs.append(status)
        return status

    def run(
        self,
        prompt: dict[str, Any],
        targets: list[str] | None = None,
        extra_data: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Validate and run a prompt; a prompt that fails validation raises AssertionError with details."""
        checked = validate_prompt(self.registry, prompt, targets)
        assert checked.ok, describe_errors(checked)
        self.events.clear()
        return self.executor.execute(
            checked.prompt, "test", checked.outputs, extra_data, lambda e, d: self.events.append((e, d))
        )

    def of(self, event: str) -> list[dict[str, Any]]:
        """The data of every event of one kind sent during the latest run."""
        return [data for name, data in self.events if name == event]


@pytest.fixture
def loom_pack(tmp_path: Path) -> Iterator[Callable[[Path | str], PackHarness]]:
    """Call with a pack's path; returns a PackHarness with that pack loaded (asserting it loaded)."""
    from nodes import builtin_registry

    configured = Folders.under(tmp_path)
    for path in (configured.output, configured.input, configured.temp):
        path.mkdir(parents=True, exist_ok=True)
    previous = folders.current()
    folders.configure(configured)
    harness = PackHarness(builtin_registry(), configured)

    def load(path: Path | str) -> PackHarness:
        status = harness.load(path)
        assert status.status == "loaded", f"pack {status.name} did not load: {status.error}"
        return harness

    yield load
    folders.configure(previous)
