"""What a scale-out worker runs: one device, one executor, one cache, its loaded models.

`DeviceRuntime` is a plain class (a Ray actor wraps it, `engine.scaleout.ray_backend`); it needs no
server. Its folders are its own (a temporary directory: output, input, temp) and its model folders
are the server's configuration, which must exist on the worker's machine too. `run(job)` writes the
job's input files, validates and executes the prompt in a thread of its own and yields the
executor's events in order; an `executed` event carries the bytes of the files it names.
"""

from __future__ import annotations

import importlib
import logging
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import folders as folder_config
from engine.context import FORCE_INTERRUPT_S, Interrupted, raise_in_thread
from engine.executor import TERMINAL_EVENTS
from engine.folders import Folders
from engine.scaleout.files import output_files, snapshot, write_inputs, written_since
from engine.scaleout.interface import Job, WorkerEvent
from engine.scaleout.routing import prompt_models

log = logging.getLogger(__name__)
_DONE = object()


@dataclass
class RuntimeSpec:
    """How to build a worker; sent from the server, so only plain, picklable values."""

    name: str
    models: dict[str, list[str]]
    custom_nodes: list[str] = field(default_factory=list)
    disable_custom_nodes: bool = False
    # Extra modules whose nodes are registered (the test suite's nodes, say).
    node_modules: list[str] = field(default_factory=list)
    cache_mode: str = "classic"
    cache_lru: int = 0
    threads: int | None = None
    force_cpu: bool = False
    labels: list[str] = field(default_factory=list)


class DeviceRuntime:
    def __init__(self, spec: RuntimeSpec) -> None:
        from engine import threads
        from engine.cache import OutputCache
        from engine.custom_nodes import load_custom_nodes
        from engine.diffusion import devices
        from engine.executor import Executor
        from nodes import builtin_registry

        self.spec = spec
        base = _working_folder(spec.name)
        self.folders = Folders(
            output=base / "output",
            input=base / "input",
            temp=base / "temp",
            models={kind: [Path(p) for p in paths] for kind, paths in spec.models.items()},
            custom_nodes=[Path(p) for p in spec.custom_nodes],
        )
        for path in (self.folders.output, self.folders.input, self.folders.temp):
            path.mkdir(parents=True, exist_ok=True)
        folder_config.configure(self.folders)
        threads.configure(spec.threads)
        devices.configure(force_cpu=spec.force_cpu)
        registry = builtin_registry()
        for module in spec.node_modules:
            registry.register_module(importlib.import_module(module))
        load_custom_nodes(registry, self.folders.custom_nodes, disable_all=spec.disable_custom_nodes)
        self.executor = Executor(registry, OutputCache(spec.cache_mode, spec.cache_lru))  # type: ignore[arg-type]
        self.current: str | None = None
        self.models: frozenset[str] = frozenset()
        self.prompts_run = 0
        self.started = time.time()
        self._thread: int | None = None
        self._lock = threading.Lock()
        # Import torch now, not during the first prompt.
        threading.Thread(target=importlib.import_module, args=("torch",), daemon=True).start()

    def run(self, job: Job) -> Iterator[WorkerEvent]:
        """The prompt's events in order; the prompt runs in a thread so that this generator can hand
        each event on as it happens."""
        events: queue.Queue[Any] = queue.Queue()
        self.current = job.prompt_id
        worker = threading.Thread(target=self._execute, args=(job, events), name=f"loom-{job.prompt_id}")
        worker.start()
        try:
            while (event := events.get()) is not _DONE:
                yield event
        finally:
            worker.join()
            self.current = None

    def interrupt(self, prompt_id: str | None) -> bool:
        running = self.current
        if running is None or (prompt_id is not None and prompt_id != running):
            return False
        self.executor.interrupt()
        threading.Timer(FORCE_INTERRUPT_S, self._force_interrupt, args=(running,)).start()
        return True

    def health(self) -> dict[str, Any]:
        return {
            "name": self.spec.name,
            "labels": sorted(self.spec.labels),
            "pid": os.getpid(),
            "host": _hostname(),
            "device": device_info(self.spec.force_cpu),
            "loaded_models": sorted(self.models),
            "current_prompt": self.current,
            "prompts_run": self.prompts_run,
            "cached_outputs": len(self.executor.cache),
            "uptime_s": round(time.time() - self.started, 1),
        }

    def free(self, unload_models: bool) -> None:
        if self.current is None:
            self.executor.cache.clear()
            self.models = frozenset()
        if unload_models:
            from engine.diffusion.devices import unload_models as unload

            unload()

    # In the prompt's thread

    def _execute(self, job: Job, events: queue.Queue[Any]) -> None:
        from engine.graph import validate_prompt

        before = snapshot(self.folders.output)
        sent: set[str] = set()

        def emit(event: str, data: dict[str, Any]) -> None:
            blobs = output_files(data.get("output") or {}, self.folders) if event == "executed" else []
            if event in TERMINAL_EVENTS:  # what nodes wrote without naming it (saved models, latents...)
                blobs += written_since(before, self.folders, sent)
            sent.update(f"{sub}/{name}".lstrip("/") for kind, sub, name, _ in blobs if kind == "output")
            events.put((event, data, blobs))

        try:
            write_inputs(job.inputs, self.folders)
            checked = validate_prompt(self.executor.registry, job.prompt, job.outputs)
            if not checked.ok:
                details = (checked.error or {}).get("details") or "prompt not valid on this worker"
                _fail_before_start(job.prompt_id, details, "ValidationError", emit)
                return
            with self._lock:
                self._thread = threading.get_ident()
            try:
                result = self.executor.execute(
                    checked.prompt, job.prompt_id, checked.outputs, job.extra_data, emit
                )
            finally:
                with self._lock:
                    self._thread = None
                    raise_in_thread(threading.get_ident(), None)
            self.prompts_run += 1
            used = prompt_models(job.prompt)
            if result.status == "success":
                self.models = used if self.spec.cache_mode == "classic" else self.models | used
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            log.exception("prompt %s failed outside any node", job.prompt_id)
            _fail_before_start(job.prompt_id, f"{type(exc).__name__}: {exc}", "ExecutionFailed", emit)
        finally:
            events.put(_DONE)

    def _force_interrupt(self, prompt_id: str) -> None:
        with self._lock:
            if self.current == prompt_id and self._thread is not None:
                log.warning("prompt %s ignored the interrupt; raising it inside the node", prompt_id)
                raise_in_thread(self._thread, Interrupted)


def _working_folder(name: str) -> Path:
    """A fresh folder for this actor's inputs and outputs; those of actors whose process is gone
    (killed, crashed, or ended with their Ray instance) are removed first."""
    import psutil

    parent = Path(tempfile.gettempdir()) / "loom-workers"
    parent.mkdir(exist_ok=True)
    for old in parent.iterdir():
        pid = old.name.split("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-{name}-", dir=parent))


def _fail_before_start(prompt_id: str, message: str, kind: str, emit: Any) -> None:
    now = int(time.time() * 1000)
    emit("execution_start", {"prompt_id": prompt_id, "timestamp": now})
    emit(
        "execution_error",
        {
            "prompt_id": prompt_id,
            "node_id": None,
            "node_type": None,
            "executed": [],
            "exception_message": message,
            "exception_type": kind,
            "traceback": [],
            "current_inputs": {},
            "current_outputs": [],
            "timestamp": now,
        },
    )
    emit("executing", {"node": None, "display_node": None, "prompt_id": prompt_id})


def _hostname() -> str:
    import socket

    return socket.gethostname()


def device_info(force_cpu: bool) -> dict[str, Any]:
    """The device this worker computes on and its memory (the GPU's, else the machine's RAM)."""
    import psutil

    torch = sys.modules.get("torch")
    if torch is not None and not force_cpu and torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        return {"type": "cuda", "name": torch.cuda.get_device_name(0), "vram_total": total, "vram_free": free}
    memory = psutil.virtual_memory()
    return {"type": "cpu", "name": "cpu", "vram_total": memory.total, "vram_free": memory.available}
