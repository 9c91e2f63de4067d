"""The executor: runs a validated prompt, re-running only what changed, with ComfyUI's semantics.

Scheduling is dynamic (`engine.execution.scheduler`): lazy inputs are computed only when a node asks
for them, nodes may expand into new nodes, `async def` nodes run concurrently with each other, and
ExecutionBlocker values skip their consumers. Events go to a listener with ComfyUI's names and fields:
execution_start, execution_cached, executing, progress, executed, execution_success /
execution_error / execution_interrupted, and finally executing with node None. The listener is
called synchronously, so a listener that records history on the terminal event has done so before
`executing: None` goes out.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from engine.cache import OutputCache
from engine.context import EventListener, Interrupted
from engine.execution.failures import NodeFailure, now_ms
from engine.execution.run import PromptRun
from engine.memory import release_freed, reuse_freed
from engine.registry import NodeRegistry
from engine.spec import NodeSpec

# The events that end a prompt (one of them, then `executing` with node None).
TERMINAL_EVENTS = ("execution_success", "execution_error", "execution_interrupted")

Status = Literal["success", "error", "interrupted"]


@dataclass
class ExecutionResult:
    status: Status
    # UI output of every output node (what /history publishes under "outputs").
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    # The execution_error or execution_interrupted event data.
    error: dict[str, Any] | None = None
    # For each node in `outputs`: node_id, display_node, parent_node, real_node_id (ComfyUI's history
    # "meta"); differs from the node itself for nodes that an expansion created.
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)
    # execution_error events of ExecutionBlockers with a message; they do not stop the prompt.
    blocked: list[dict[str, Any]] = field(default_factory=list)


def _no_listener(event: str, data: dict[str, Any]) -> None:
    return None


class Executor:
    """Runs prompts one at a time; keeps node instances (per node id) and the output cache between them."""

    def __init__(self, registry: NodeRegistry, cache: OutputCache | None = None) -> None:
        reuse_freed()  # prompts' large activations reuse freed heap memory; trimmed after each prompt
        self.registry = registry
        self.cache = cache if cache is not None else OutputCache()
        self._interrupt = threading.Event()
        self._instances: dict[tuple[str, str], Any] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def interrupt(self) -> None:
        """Stop the running prompt at the next node boundary or progress report."""
        self._interrupt.set()

    def execute(
        self,
        prompt: dict[str, Any],
        prompt_id: str,
        outputs: list[str],
        extra_data: dict[str, Any] | None = None,
        listener: EventListener | None = None,
    ) -> ExecutionResult:
        """Run a prompt that `validate_prompt` accepted (pass its coerced prompt and good outputs)."""
        emit = listener or _no_listener
        started = time.monotonic()
        self._interrupt.clear()
        emit("execution_start", {"prompt_id": prompt_id, "timestamp": now_ms()})
        result = ExecutionResult("success")
        run = PromptRun(self, prompt, prompt_id, extra_data or {}, emit, result)
        try:
            self._drive(run.execute(outputs))
        except NodeFailure as failure:
            self._fail(run, failure)
        except Interrupted as interrupted:
            self._interrupted(run, str(interrupted.args[0]) if interrupted.args else "")
        else:
            emit("execution_success", {"prompt_id": prompt_id, "timestamp": now_ms()})
        finally:
            self.cache.finish_prompt(run.used_keys())
            release_freed(started)  # what the prompt's activations left in the heap goes back to the OS
        emit("executing", {"node": None, "display_node": None, "prompt_id": prompt_id})
        return result

    def _drive(self, work: Coroutine[Any, Any, None]) -> None:
        """Run a prompt on the executor's own event loop (async nodes run concurrently on it)."""
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._loop.run_until_complete(work)
            return
        # Called from inside a running loop (a notebook, Playwright's sync API): this thread cannot
        # drive a second loop, so a helper thread drives ours.
        with ThreadPoolExecutor(max_workers=1) as helper:
            helper.submit(self._loop.run_until_complete, work).result()

    def instance(self, node_id: str, spec: NodeSpec) -> Any:
        """The node object for a node id: created once and reused by later prompts, as ComfyUI does."""
        key = (node_id, spec.id)
        if key not in self._instances:
            self._instances[key] = spec.cls()
        return self._instances[key]

    @property
    def interrupt_flag(self) -> threading.Event:
        return self._interrupt

    def _fail(self, run: PromptRun, failure: NodeFailure) -> None:
        run.result.status = "error"
        run.result.error = failure.event(run)
        run.emit("execution_error", run.result.error)

    def _interrupted(self, run: PromptRun, node_id: str) -> None:
        real = run.dynprompt.get_real_node_id(node_id) if run.dynprompt.has_node(node_id) else node_id
        run.result.status = "interrupted"
        run.result.error = {
            "prompt_id": run.prompt_id,
            "node_id": real,
            "node_type": run.prompt.get(real, {}).get("class_type"),
            "executed": list(run.result.executed),
            "timestamp": now_ms(),
        }
        run.emit("execution_interrupted", run.result.error)
