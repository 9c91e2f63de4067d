"""The device worker interface: what the server's dispatcher needs from a worker, wherever it runs.

A device worker owns one device, its executor, its output cache and its loaded models, and runs one
whole prompt at a time: `engine.scaleout.ray_backend.RayDeviceWorker`, a handle on a Ray actor that
runs `engine.scaleout.runtime.DeviceRuntime` in its own process, possibly on another machine (tests
also drive the dispatcher with a scripted in-process one).

The server itself sees one worker interface with two implementations: `engine.server.worker.Worker`,
which runs prompts in this process (a plain `python main.py`, unchanged since before scale-out), and
`engine.server.pool.PoolWorker`, which dispatches them to device workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

# One event as the executor emits it, plus the files it refers to: [(folder type, subfolder,
# filename, bytes)] for `executed` events whose UI output names output or temp files.
FileBlob = tuple[str, str, str, bytes]
WorkerEvent = tuple[str, dict[str, Any], list[FileBlob]]


@dataclass
class Job:
    """A whole prompt, as sent to a worker: the prompt, its outputs and extra_data (preview method
    resolved), and the input files it names (folder type, relative path, bytes)."""

    prompt_id: str
    prompt: dict[str, Any]
    outputs: list[str]
    extra_data: dict[str, Any]
    inputs: list[tuple[str, str, bytes]] = field(default_factory=list)


class WorkerGone(Exception):
    """The worker died or became unreachable while running a prompt (process crash, node lost)."""


class DeviceWorker(Protocol):
    """Start, run a prompt and stream its events, interrupt, health, stop."""

    name: str
    labels: frozenset[str]

    async def start(self) -> None:
        """Create (or re-attach to) the worker and wait until it can take a prompt."""

    def run(self, job: Job) -> AsyncIterator[WorkerEvent]:
        """The prompt's events in order, ending with `executing` for node None; raises WorkerGone."""
        ...

    async def interrupt(self, prompt_id: str | None) -> bool:
        """Stop that prompt (None: whatever runs); False when it is not running there."""
        ...

    async def health(self) -> dict[str, Any]:
        """Device, memory, loaded models, current prompt; raises WorkerGone when unreachable."""
        ...

    async def free(self, unload_models: bool) -> None:
        """Drop cached node outputs (and unload models)."""

    async def stop(self) -> None:
        """Interrupt what runs; a worker the server does not own (a cluster's) is left running."""
