"""The background worker: takes prompts from the durable queue and runs them in one thread.

The executor's listener runs in that thread. On the terminal event (success, error, interrupted)
it writes the history entry before anything else happens, so by the time the executor sends its
final `executing` with node None, `/history/{id}` already answers.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from engine.executor import Executor
from engine.graph import validate_prompt
from engine.queue import PromptStore, QueueItem
from engine.server.hub import Hub
from engine.server.progress import ProgressState, preview_method, resolve_preview_method

log = logging.getLogger(__name__)

TERMINAL = ("execution_success", "execution_error", "execution_interrupted")
# What ComfyUI keeps in a history entry's status.messages.
RECORDED = ("execution_start", "execution_cached", *TERMINAL)


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
    def __init__(self, store: PromptStore, executor: Executor, hub: Hub, previews: str = "none") -> None:
        # The server's --preview-method; a prompt's extra_data.preview_method overrides it.
        self.previews = previews
        self.store = store
        self.executor = executor
        self.hub = hub
        self.running: QueueItem | None = None
        self.stopping = False
        self._wake = asyncio.Event()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-executor")
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

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
        return True

    def warm_up(self) -> None:
        """Import torch in the executor's thread once the server answers, so start-up stays quick and
        the first prompt does not pay for the import."""
        if importlib.util.find_spec("torch") is not None:
            self._thread.submit(importlib.import_module, "torch")

    def free_cache(self) -> None:
        """Clear cached outputs in the executor's thread, so it never races a running prompt."""
        self._thread.submit(self.executor.cache.clear)

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
            item = self.store.claim_next()
            if item is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            self.running = item
            try:
                await self._loop.run_in_executor(self._thread, self._execute, item)
            finally:
                self.running = None

    async def stop(self, grace: float = 5.0) -> None:
        """Interrupt the running prompt and give it `grace` seconds to stop; it goes back to pending
        and runs at the next start (if it does not stop in time, start-up recovery does the same)."""
        self.stopping = True
        if self.running is not None:
            self.executor.interrupt()
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
            self.executor.execute(
                checked.prompt,
                item.prompt_id,
                checked.outputs,
                extra_data,
                lambda e, d: self._on(run, e, d),
            )
        except Exception as exc:
            log.exception("prompt %s failed outside any node", item.prompt_id)
            if not run.finished:
                self._fail_before_start(run, f"{type(exc).__name__}: {exc}")
        finally:
            self.hub.current = (None, None)

    def _on(self, run: _Run, event: str, data: dict[str, Any]) -> None:
        if event in RECORDED:
            run.messages.append([event, data])
        if event == "executing":
            self.hub.current = (run.sid, data.get("node"))
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
            self.store.requeue(prompt_id)
            return
        success = event == "execution_success"
        status = {
            "status_str": "success" if success else "error",
            "completed": success,
            "messages": run.messages,
        }
        outcome = "cancelled" if event == "execution_interrupted" else None
        history = {"outputs": run.outputs, "status": status, "meta": run.meta}
        self.store.finish(prompt_id, history, outcome)
        log.info("Prompt executed in %.2f seconds", time.perf_counter() - run.started)
        self.hub.send_threadsafe(event, data, run.sid)
        self.hub.send_threadsafe("status", self.status())
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.release, [prompt_id])

    def _fail_before_start(self, run: _Run, message: str) -> None:
        """A prompt that cannot start (its nodes changed since it was queued) still gets history."""
        prompt_id = run.item.prompt_id
        self._on(run, "execution_start", {"prompt_id": prompt_id, "timestamp": _now_ms()})
        error: dict[str, Any] = {
            "prompt_id": prompt_id,
            "node_id": None,
            "node_type": None,
            "executed": [],
            "exception_message": message,
            "exception_type": "ValidationError",
            "traceback": [],
            "current_inputs": {},
            "current_outputs": [],
            "timestamp": _now_ms(),
        }
        self._on(run, "execution_error", error)
        self._on(run, "executing", {"node": None, "display_node": None, "prompt_id": prompt_id})


def _now_ms() -> int:
    return int(time.time() * 1000)
