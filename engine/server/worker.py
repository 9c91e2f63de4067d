"""The background worker: takes prompts from the durable queue and runs them in one thread.

The executor's listener runs in that thread. On the terminal event (success, error, interrupted)
it writes the history entry before anything else happens, so by the time the executor sends its
final `executing` with node None, `/history/{id}` already answers.

Recording can fail (a full disk): the entry is retried a few times, then kept in memory and retried
before each later prompt and every few seconds, so the queue keeps moving and the prompt is never
run a second time because its result was not written. A node that raises SystemExit or
KeyboardInterrupt fails its prompt; it never stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.comfy_compat.prompt_server import PromptServer
from engine.context import FORCE_INTERRUPT_S, Interrupted, raise_in_thread
from engine.executor import TERMINAL_EVENTS, Executor
from engine.graph import validate_prompt
from engine.queue import PromptStore, QueueItem
from engine.server.hub import Hub
from engine.server.progress import ProgressState, preview_method, resolve_preview_method

log = logging.getLogger(__name__)

TERMINAL = TERMINAL_EVENTS
# What ComfyUI keeps in a history entry's status.messages.
RECORDED = ("execution_start", "execution_cached", *TERMINAL)
# Waits between attempts to write a finished prompt before it is kept for later.
RECORD_RETRY_S = (0.05, 0.25, 1.0)
# While something could not be written, the worker tries again this often even when idle.
RETRY_IDLE_S = 2.0
# A history entry is stored and served with the queue's answers; a node's UI output over the limit
# (text or numbers by the megabyte) is replaced by a note, image references are always kept.
MAX_HISTORY_BYTES = 4 << 20
MAX_UI_VALUE_BYTES = 256 << 10


@dataclass
class _Run:
    item: QueueItem
    sid: str | None
    messages: list[list[Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    finished: bool = False
    started: float = field(default_factory=time.perf_counter)
    progress: ProgressState | None = None


class Worker:
    """Runs the queue's prompts in this process. The server talks to its worker only through this
    class's public methods (run, queue_changed, interrupt, free_cache, unload_models, describe,
    wait_for, release, stop); `engine.server.pool.PoolWorker` implements the same methods over Ray
    actors (docs/scale-out.md)."""

    def __init__(
        self,
        store: PromptStore,
        executor: Executor,
        hub: Hub,
        previews: str = "none",
        force_cpu: bool = False,
    ) -> None:
        # The server's --preview-method; a prompt's extra_data.preview_method overrides it.
        self.previews = previews
        self.force_cpu = force_cpu
        self.store = store
        self.executor = executor
        self.hub = hub
        self.running: QueueItem | None = None
        self.stopping = False
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-executor")
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        # Finished prompts whose history entry could not be written yet (executor thread only).
        self.unrecorded: dict[str, tuple[dict[str, Any], str | None]] = {}
        # The executor thread's id while it runs a prompt; guarded so that a forced interrupt can
        # only land inside the prompt, never in the worker's own bookkeeping.
        self._executing: int | None = None
        self._force_lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        return {"status": {"exec_info": {"queue_remaining": self.store.remaining()}}}

    def queue_changed(self) -> None:
        """Tell every client the new queue length and let the worker look for work."""
        self.hub.send("status", self.status())
        self._wake.set()

    def interrupt(self, prompt_id: str | None = None) -> bool:
        running = self.running
        if running is None or (prompt_id is not None and running.prompt_id != prompt_id):
            return False
        self.executor.interrupt()
        if self._loop is not None:
            self._loop.call_later(FORCE_INTERRUPT_S, self._force_interrupt, running)
        return True

    def _force_interrupt(self, item: QueueItem) -> None:
        """Raise Interrupted in the executor thread if `item` is still running (a node that never
        reports progress cannot see the flag); pure-Python loops stop at their next bytecode."""
        with self._force_lock:
            if self.running is not item or self._executing is None:
                return
            log.warning(
                "prompt %s ignored the interrupt for %.0f s; raising it inside the node",
                item.prompt_id,
                FORCE_INTERRUPT_S,
            )
            raise_in_thread(self._executing, Interrupted)

    def warm_up(self, then: Callable[[], None] | None = None) -> None:
        """Import torch in the executor's thread once the server answers, so start-up stays quick and
        the first prompt does not pay for the import; `then` runs after it, in that thread."""
        if importlib.util.find_spec("torch") is not None:
            self._thread.submit(importlib.import_module, "torch")
        if then is not None:
            self._thread.submit(then)

    def free_cache(self) -> None:
        """Clear cached outputs in the executor's thread, so it never races a running prompt."""
        self._thread.submit(self.executor.cache.clear)

    def unload_models(self) -> None:
        """Nothing beyond POST /free's own unload: this process's models are the server's."""

    async def describe(self) -> list[dict[str, Any]]:
        """The workers that run prompts, for /system_stats: here, this process."""
        from engine.scaleout.runtime import device_info

        running = self.running
        device = await asyncio.to_thread(device_info, self.force_cpu)
        return [
            {
                "name": "local",
                "backend": "local",
                "alive": True,
                "pid": os.getpid(),
                "device": device,
                "current_prompt": running.prompt_id if running else None,
            }
        ]

    async def wait_for(self, prompt_id: str, timeout: float) -> bool:
        """Wait until a prompt is done or deleted; False on timeout."""
        future = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(prompt_id, []).append(future)
        try:
            await asyncio.wait_for(future, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            waiting = self._waiters.get(prompt_id, [])
            if future in waiting:
                waiting.remove(future)
            if not waiting:
                self._waiters.pop(prompt_id, None)

    def waiting(self) -> list[str]:
        return list(self._waiters)

    def release(self, prompt_ids: list[str]) -> None:
        """Wake whoever waits on these prompts (done, or deleted from the queue)."""
        for prompt_id in prompt_ids:
            for future in self._waiters.pop(prompt_id, []):
                if not future.done():
                    future.set_result(None)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        while True:
            if self.unrecorded:
                await self._loop.run_in_executor(self._thread, self._record_pending)
            try:
                item = self.store.claim_next()
            except sqlite3.Error as exc:
                log.error("cannot take the next prompt from %s: %s; retrying", self.store.path, exc)
                await self._idle(RETRY_IDLE_S)
                continue
            if item is None:
                await self._idle(RETRY_IDLE_S if self.unrecorded else None)
                continue
            self.running = item
            try:
                await self._loop.run_in_executor(self._thread, self._execute, item)
            except Exception:
                log.exception("the worker failed around prompt %s", item.prompt_id)
            finally:
                self.running = None

    async def _idle(self, timeout: float | None) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def stop(self, grace: float = 5.0) -> None:
        """Interrupt the running prompt and give it `grace` seconds to stop; it goes back to pending
        and runs at the next start (if it does not stop in time, start-up recovery does the same)."""
        self.stopping = True
        running = self.running
        if running is not None:
            self.executor.interrupt()
            asyncio.get_running_loop().call_later(grace / 2, self._force_interrupt, running)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.running is not None and loop.time() < deadline:
            await asyncio.sleep(0.02)
        self._thread.shutdown(wait=False, cancel_futures=True)

    # In the executor's thread

    def _execute(self, item: QueueItem) -> None:
        run = _Run(item, item.extra_data.get("client_id"))
        run.progress = ProgressState(item.prompt_id)
        method = resolve_preview_method(preview_method(item.extra_data, self.previews))
        extra_data = {**item.extra_data, "preview_method": method}
        try:
            checked = validate_prompt(self.executor.registry, item.prompt, item.outputs)
            if not checked.ok:
                self._fail_before_start(run, (checked.error or {}).get("details") or "prompt no longer valid")
                return
            with self._force_lock:
                self._executing = threading.get_ident()
            try:
                self.executor.execute(
                    checked.prompt,
                    item.prompt_id,
                    checked.outputs,
                    extra_data,
                    lambda e, d: self._on(run, e, d),
                )
            finally:
                with self._force_lock:
                    self._executing = None
                    raise_in_thread(threading.get_ident(), None)  # drop one that came too late
        except (Exception, SystemExit, KeyboardInterrupt) as exc:
            # SystemExit and KeyboardInterrupt from a node end its prompt, never the server.
            log.exception("prompt %s failed outside any node", item.prompt_id)
            if not run.finished:
                self._fail_before_start(run, f"{type(exc).__name__}: {exc}", "ExecutionFailed")
        finally:
            self.hub.current = (None, None)

    def _on(self, run: _Run, event: str, data: dict[str, Any]) -> None:
        if event in RECORDED:
            run.messages.append([event, data])
        if event == "executing":
            self.hub.current = (run.sid, data.get("node"))
            # Packs read the running prompt's client and node from ComfyUI's server object.
            PromptServer.instance.client_id, PromptServer.instance.last_node_id = run.sid, data.get("node")
            PromptServer.instance.last_prompt_id = run.item.prompt_id
            self._mark_node(run.item.prompt_id, data.get("node"))
        elif event == "executed":
            node = data["node"]
            run.outputs[node] = data["output"]
            run.meta[node] = {
                "node_id": node,
                "display_node": data.get("display_node", node),
                "parent_node": None,
                "real_node_id": node,
            }
        state = run.progress.update(event, data) if run.progress is not None else None
        terminal = event in TERMINAL and data.get("exception_type") != "ExecutionBlocked"
        if state is not None and (terminal or event == "executing"):
            # As in ComfyUI: a node's start, and the last node's end, come before the event.
            self.hub.send_threadsafe("progress_state", state, run.sid)
            state = None
        if terminal:
            self._finish(run, event, data)
            return
        self.hub.send_threadsafe(event, data, run.sid)
        if state is not None:
            self.hub.send_threadsafe("progress_state", state, run.sid)

    def _finish(self, run: _Run, event: str, data: dict[str, Any]) -> None:
        prompt_id = run.item.prompt_id
        run.finished = True
        if self.stopping and event == "execution_interrupted":
            try:
                self.store.requeue(prompt_id)
            except sqlite3.Error as exc:  # it is still 'running', so the next start runs it anyway
                log.error("cannot put prompt %s back in the queue: %s", prompt_id, exc)
            return
        success = event == "execution_success"
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": run.messages,
        }
        outcome = "cancelled" if event == "execution_interrupted" else None
        history = {"outputs": run.outputs, "status": status, "meta": run.meta}
        recorded = self._record(prompt_id, bounded_history(history, MAX_HISTORY_BYTES), outcome)
        log.info("Prompt executed in %.2f seconds", time.perf_counter() - run.started)
        self.hub.send_threadsafe(event, data, run.sid)
        if recorded:
            self._recorded(prompt_id)

    def _record(self, prompt_id: str, history: dict[str, Any], outcome: str | None) -> bool:
        """Write a history entry, retrying; if the store still refuses, keep it for later (False)."""
        for delay in (*RECORD_RETRY_S, None):
            try:
                self.store.finish(prompt_id, history, outcome)
                return True
            except sqlite3.Error as exc:
                if delay is None or self.stopping:
                    log.error(
                        "cannot record the result of prompt %s in %s: %s; keeping it and retrying while"
                        " later prompts run",
                        prompt_id,
                        self.store.path,
                        exc,
                    )
                    self.unrecorded[prompt_id] = (history, outcome)
                    self.hub.send_threadsafe(
                        "loom_record_failed", {"prompt_id": prompt_id, "error": str(exc)}, None
                    )
                    return False
                time.sleep(delay)
        return False

    def _recorded(self, prompt_id: str) -> None:
        """The entry is written: the queue is shorter, and waiters on this prompt can go."""
        self.hub.send_threadsafe("status", self.status())
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.release, [prompt_id])

    def _record_pending(self) -> None:
        for prompt_id, (history, outcome) in list(self.unrecorded.items()):
            try:
                self.store.finish(prompt_id, history, outcome)
            except sqlite3.Error:
                return
            log.warning("recorded the result of prompt %s after an earlier failure", prompt_id)
            del self.unrecorded[prompt_id]
            self._recorded(prompt_id)

    def _mark_node(self, prompt_id: str, node_id: str | None) -> None:
        try:
            self.store.mark_node(prompt_id, node_id)
        except sqlite3.Error as exc:  # only the crash report loses detail
            log.warning("cannot note the running node of prompt %s: %s", prompt_id, exc)

    def _fail_before_start(self, run: _Run, message: str, kind: str = "ValidationError") -> None:
        """A prompt that cannot start (its nodes changed since it was queued) still gets history."""
        prompt_id = run.item.prompt_id
        self._on(run, "execution_start", {"prompt_id": prompt_id, "timestamp": _now_ms()})
        error: dict[str, Any] = {
            "prompt_id": prompt_id,
            "node_id": None,
            "node_type": None,
            "executed": [],
            "exception_message": message,
            "exception_type": kind,
            "traceback": [],
            "current_inputs": {},
            "current_outputs": [],
            "timestamp": _now_ms(),
        }
        self._on(run, "execution_error", error)
        self._on(run, "executing", {"node": None, "display_node": None, "prompt_id": prompt_id})


def bounded_history(history: dict[str, Any], limit: int) -> dict[str, Any]:
    """The entry, with oversized UI values (other than image references) replaced by a note."""
    if len(json.dumps(history, default=str)) <= limit:
        return history
    outputs: dict[str, Any] = {}
    for node, ui in history["outputs"].items():
        outputs[node] = {}
        for key, value in ui.items():
            size = len(json.dumps(value, default=str))
            if key in ("images", "gifs", "audio", "animated") or size <= MAX_UI_VALUE_BYTES:
                outputs[node][key] = value
            else:
                outputs[node][key] = [f"(not kept: {size} bytes, over the history entry limit)"]
    log.warning("a history entry was over %d bytes; large UI outputs were left out", limit)
    return {**history, "outputs": outputs}


def _now_ms() -> int:
    return int(time.time() * 1000)
