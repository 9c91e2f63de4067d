"""The scale-out dispatcher: one SQLite queue, many device workers (Ray actors), whole prompts.

It is the server's worker (`app[WORKER]`) when Loom runs with `--ray` or `--ray-address`, and keeps
everything of the local `Worker` that is about the queue and the record: history written before the
final event, the retrying recorder, waiters, status messages. What differs: prompts are taken out of
order when routing says so (`engine.scaleout.routing`), several run at once (one per worker), and
each prompt's events arrive from its worker's stream, with its output files, and are published in
order. A worker that dies mid-prompt gives its prompt back to the queue once (it then runs elsewhere
if another worker can take it); a second death marks it failed. The store's attempt counter is the
one that a server crash also counts, so no prompt ever runs more than twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

from engine.executor import Executor
from engine.folders import Folders
from engine.queue import MAX_ATTEMPTS, PromptStore, QueueItem
from engine.scaleout import routing
from engine.scaleout.files import job_inputs, place_files
from engine.scaleout.interface import DeviceWorker, Job, WorkerGone
from engine.server.hub import Hub
from engine.server.progress import ProgressState, preview_method, resolve_preview_method
from engine.server.worker import RETRY_IDLE_S, TERMINAL, Worker, _Run

log = logging.getLogger(__name__)
# Events that write to the store are handled in a thread; the rest on the event loop.
STORE_EVENTS = ("executing", *TERMINAL)
HEALTH_TIMEOUT_S = 3.0


@dataclass
class Device:
    worker: DeviceWorker
    alive: bool = False
    running: QueueItem | None = None
    models: frozenset[str] = frozenset()
    prompts_run: int = 0
    deaths: int = 0
    last_error: str | None = None
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def view(self) -> routing.WorkerView:
        return routing.WorkerView(
            self.worker.name,
            self.worker.labels,
            busy=self.running is not None,
            models=self.models,
            prompts_run=self.prompts_run,
            alive=self.alive,
        )


class PoolWorker(Worker):
    def __init__(
        self,
        store: PromptStore,
        executor: Executor,
        hub: Hub,
        previews: str,
        workers: list[DeviceWorker],
        folders: Folders,
        routing_policy: str = "affinity",
    ) -> None:
        super().__init__(store, executor, hub, previews)
        self.devices = {w.name: Device(w) for w in workers}
        self.folders = folders
        self._skips: dict[str, int] = {}
        self._avoid: dict[str, set[str]] = {}
        self._round_robin = routing.RoundRobin() if routing_policy == "round-robin" else None

    # What the routes call

    def interrupt(self, prompt_id: str | None = None) -> bool:
        """Interrupt that prompt on the worker running it; without an id, every running prompt."""
        hit = False
        for device in self.devices.values():
            item = device.running
            if item is not None and (prompt_id is None or item.prompt_id == prompt_id):
                asyncio.get_running_loop().create_task(device.worker.interrupt(item.prompt_id))
                hit = True
        return hit

    def free_cache(self) -> None:
        """Idle workers drop their cached outputs, and with them the models they held."""
        for device in self.devices.values():
            if device.running is None:
                device.models = frozenset()
            asyncio.get_running_loop().create_task(device.worker.free(False))

    def unload_models(self) -> None:
        for device in self.devices.values():
            if device.running is None:
                device.models = frozenset()
            asyncio.get_running_loop().create_task(device.worker.free(True))

    def warm_up(self, then: Any = None) -> None:
        if then is not None:
            self._thread.submit(then)

    async def describe(self) -> list[dict[str, Any]]:
        """Every worker for /system_stats: the worker's own report, or why there is none."""
        return list(await asyncio.gather(*(self._describe(d) for d in self.devices.values())))

    async def _describe(self, device: Device) -> dict[str, Any]:
        info: dict[str, Any] = {"name": device.worker.name, "backend": "ray", "alive": device.alive}
        try:
            async with asyncio.timeout(HEALTH_TIMEOUT_S):
                info.update(await device.worker.health())
        except (WorkerGone, TimeoutError) as exc:
            info["error"] = str(exc) or "no answer"
        info.update(
            {
                "alive": device.alive,
                "labels": sorted(device.worker.labels),
                "current_prompt": device.running.prompt_id if device.running else None,
                "deaths": device.deaths,
                "last_error": device.last_error,
            }
        )
        return info

    # The dispatch loop

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        for device in self.devices.values():
            self._loop.create_task(self._bring_up(device))
        while True:
            # Cleared before looking, so a wake-up that comes while the dispatcher looks is kept.
            self._wake.clear()
            if self.unrecorded:
                await self._loop.run_in_executor(self._thread, self._record_pending)
            try:
                started = await self._loop.run_in_executor(self._thread, self._dispatch)
            except sqlite3.Error as exc:
                log.error("cannot take prompts from %s: %s; retrying", self.store.path, exc)
                await self._idle(RETRY_IDLE_S)
                continue
            for device, item, attempt in started:
                device.running = item
                self.running = item
                device.task = self._loop.create_task(self._drive(device, item, attempt))
            if not started:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), RETRY_IDLE_S if self.unrecorded else None)

    def _dispatch(self) -> list[tuple[Device, QueueItem, int]]:
        """Route pending prompts to free workers and claim them (in the store's thread)."""
        if self.stopping or not any(d.alive and d.running is None for d in self.devices.values()):
            return []
        pending = self.store.pending(max(2 * len(self.devices), 4))
        self._skips = {
            item.prompt_id: self._skips[item.prompt_id] for item in pending if item.prompt_id in self._skips
        }
        views = [d.view() for d in self.devices.values()]
        waiting: list[routing.PendingPrompt] = []
        for item in pending:
            prompt = routing.PendingPrompt(
                item.prompt_id,
                routing.prompt_models(item.prompt),
                routing.prompt_labels(item.extra_data),
                frozenset(self._avoid.get(item.prompt_id, ())),
                self._skips.get(item.prompt_id, 0),
            )
            if routing.can_ever_run(prompt, views):
                waiting.append(prompt)
            else:
                self._refuse(item, prompt.labels)
        plan = self._round_robin.plan(waiting, views) if self._round_robin else routing.plan(waiting, views)
        chosen = {prompt_id for prompt_id, _ in plan}
        if plan:
            last = max(i for i, p in enumerate(waiting) if p.prompt_id in chosen)
            for prompt in waiting[:last]:
                if prompt.prompt_id not in chosen:
                    self._skips[prompt.prompt_id] = prompt.skipped + 1
        by_id = {item.prompt_id: item for item in pending}
        started = []
        for prompt_id, name in plan:
            attempt = self.store.claim(prompt_id)
            if attempt is not None:
                self._skips.pop(prompt_id, None)
                started.append((self.devices[name], by_id[prompt_id], attempt))
        return started

    def _refuse(self, item: QueueItem, labels: frozenset[str]) -> None:
        """A prompt pinned to labels no worker has fails at once instead of waiting forever."""
        if self.store.claim(item.prompt_id) is None:
            return
        known = sorted({label for d in self.devices.values() for label in d.worker.labels | {d.worker.name}})
        message = f"no worker matches extra_data.worker {sorted(labels)}; workers offer {known}"
        self._fail(item, message, "NoMatchingWorker")

    async def _bring_up(self, device: Device) -> None:
        """Start (or re-attach to, or recreate) a worker, retrying until it answers."""
        delay = 1.0
        while not self.stopping:
            try:
                await device.worker.start()
            except Exception as exc:
                device.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("worker %s did not start: %s; retrying in %.0f s", device.worker.name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            with contextlib.suppress(WorkerGone):
                # A worker re-attached after a server restart still holds what it loaded then.
                device.models = frozenset((await device.worker.health()).get("loaded_models", ()))
            device.alive = True
            log.info("worker %s is ready", device.worker.name)
            self._wake.set()
            return

    # One prompt on one worker

    async def _drive(self, device: Device, item: QueueItem, attempt: int) -> None:
        run = _Run(item, item.extra_data.get("client_id"))
        run.progress = ProgressState(item.prompt_id)
        method = resolve_preview_method(preview_method(item.extra_data, self.previews))
        died: WorkerGone | None = None
        try:
            inputs = await asyncio.to_thread(job_inputs, item.prompt, self.folders)
            job = Job(
                item.prompt_id,
                item.prompt,
                item.outputs,
                {**item.extra_data, "preview_method": method},
                inputs,
            )
            self.hub.send(
                "loom_dispatch",
                {"prompt_id": item.prompt_id, "worker": device.worker.name, "attempt": attempt},
                run.sid,
            )
            async for event, data, blobs in device.worker.run(job):
                if blobs:
                    await asyncio.to_thread(place_files, blobs, data.get("output") or {}, self.folders)
                if event in STORE_EVENTS:
                    await asyncio.to_thread(self._on, run, event, data)
                else:
                    self._on(run, event, data)
            if not run.finished:
                raise WorkerGone(f"worker {device.worker.name} ended the prompt without a result")
        except WorkerGone as exc:
            died = exc
        except Exception as exc:
            log.exception("prompt %s failed on worker %s", item.prompt_id, device.worker.name)
            if not run.finished:
                await asyncio.to_thread(
                    self._fail, item, f"{type(exc).__name__}: {exc}", "ExecutionFailed", run
                )
        finally:
            device.running = None
            self.running = next((d.running for d in self.devices.values() if d.running), None)
            self.hub.current = (None, None)
        device.prompts_run += 1
        if died is not None:
            await self._worker_died(device, item, attempt, died, run.finished)
        else:
            self._avoid.pop(item.prompt_id, None)
            if self._succeeded(run):
                device.models = routing.prompt_models(item.prompt)
        self._wake.set()

    @staticmethod
    def _succeeded(run: _Run) -> bool:
        return any(event == "execution_success" for event, _ in run.messages)

    async def _worker_died(
        self, device: Device, item: QueueItem, attempt: int, exc: WorkerGone, recorded: bool
    ) -> None:
        """Bring the worker back; give its prompt one more run, or record it failed. A prompt whose
        result was already recorded when the worker died is done."""
        name = device.worker.name
        device.alive, device.models, device.deaths, device.last_error = (
            False,
            frozenset(),
            device.deaths + 1,
            str(exc),
        )
        log.error("worker %s died running prompt %s (attempt %d): %s", name, item.prompt_id, attempt, exc)
        asyncio.get_running_loop().create_task(self._bring_up(device))
        if recorded:
            return
        self._avoid.setdefault(item.prompt_id, set()).add(name)
        if self.stopping or attempt < MAX_ATTEMPTS:
            await asyncio.to_thread(self.store.retry, item.prompt_id)
            self.hub.send(
                "loom_retry", {"prompt_id": item.prompt_id, "worker": name, "error": str(exc)}, None
            )
        else:
            message = (
                f"The worker running this prompt died on each of its {attempt} attempts"
                f" (last: {name}: {exc}); it is not run again."
            )
            await asyncio.to_thread(self._fail, item, message, "WorkerDied")
            self._avoid.pop(item.prompt_id, None)
        self.queue_changed()

    def _fail(self, item: QueueItem, message: str, kind: str, run: _Run | None = None) -> None:
        """Record a failure the worker could not report (in a thread: it writes the store)."""
        self._fail_before_start(run or _Run(item, item.extra_data.get("client_id")), message, kind)

    async def stop(self, grace: float = 5.0) -> None:
        """Interrupt every running prompt; those that stop in time go back to the queue, the others
        are still 'running' in the store and run again at the next start (as with the local worker)."""
        self.stopping = True
        for device in self.devices.values():
            if device.running is not None:
                await device.worker.interrupt(device.running.prompt_id)
        deadline = time.monotonic() + grace
        tasks = [d.task for d in self.devices.values() if d.task is not None and not d.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=max(deadline - time.monotonic(), 0.1))
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._thread.shutdown(wait=False, cancel_futures=True)
