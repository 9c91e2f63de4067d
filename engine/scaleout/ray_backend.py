"""The Ray backend: connect to (or start) Ray, and one actor per device running `DeviceRuntime`.

`--ray` starts a local Ray instance owned by the server (its actors end with it); `--ray-address`
joins a running cluster, where the actors are named and detached (`loom-worker-N` in the `loom`
namespace): a restarted server finds them again, with their models still loaded. Each actor takes
one GPU on GPU clusters, one CPU slot otherwise. Ray restarts an actor whose process died; the
prompt it was running is the dispatcher's to retry (tasks are never retried by Ray itself).

Ray is imported only here, and only when one of the flags is given.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any

from engine.folders import PROJECT_ROOT
from engine.scaleout.config import RayConfig
from engine.scaleout.interface import Job, WorkerEvent, WorkerGone
from engine.scaleout.runtime import DeviceRuntime, RuntimeSpec

log = logging.getLogger(__name__)
# Ray restarts a dead actor this many times before the dispatcher makes a new one.
MAX_RESTARTS = 4
# A re-attached actor still finishing a previous server's prompt is given this long to stop.
SETTLE_S = 10.0


class DeviceActor:
    """The actor's body: a DeviceRuntime, and `ready` for (re-)attaching."""

    def __init__(self, spec: RuntimeSpec) -> None:
        self.runtime = DeviceRuntime(spec)

    def ready(self) -> dict[str, Any]:
        """Stop a prompt a previous server left running here, then report health."""
        if self.runtime.current is not None:
            self.runtime.interrupt(None)
            deadline = time.monotonic() + SETTLE_S
            while self.runtime.current is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        return self.runtime.health()

    def run(self, job: Job) -> Any:
        yield from self.runtime.run(job)

    def interrupt(self, prompt_id: str | None) -> bool:
        return self.runtime.interrupt(prompt_id)

    def health(self) -> dict[str, Any]:
        return self.runtime.health()

    def free(self, unload_models: bool) -> None:
        self.runtime.free(unload_models)


class RayDeviceWorker:
    """A handle on one actor; implements engine.scaleout.interface.DeviceWorker."""

    def __init__(self, name: str, labels: frozenset[str], make_actor: Callable[[], Any]) -> None:
        self.name = name
        self.labels = labels
        self._make_actor = make_actor
        self.actor: Any = None

    async def start(self) -> None:
        if self.actor is None:
            self.actor = await asyncio.to_thread(self._make_actor)
        try:
            await self.actor.ready.remote()
        except _actor_errors() as exc:
            # Out of restarts, or its node is gone for good: a new actor of the same name.
            log.warning("worker %s is gone (%s); creating it again", self.name, _short(exc))
            self.actor = await asyncio.to_thread(self._make_actor)
            await self.actor.ready.remote()

    async def run(self, job: Job) -> AsyncIterator[WorkerEvent]:
        try:
            stream = self.actor.run.options(num_returns="streaming").remote(job)
            async for ref in stream:
                yield await ref
        except _actor_errors() as exc:
            raise WorkerGone(f"worker {self.name} died: {_short(exc)}") from exc

    async def interrupt(self, prompt_id: str | None) -> bool:
        if self.actor is None:
            return False
        try:
            return bool(await self.actor.interrupt.remote(prompt_id))
        except _actor_errors():
            return False

    async def health(self) -> dict[str, Any]:
        if self.actor is None:
            raise WorkerGone("starting")
        try:
            return dict(await self.actor.health.remote())
        except _actor_errors() as exc:
            raise WorkerGone(_short(exc)) from exc

    async def free(self, unload_models: bool) -> None:
        if self.actor is None:
            return
        try:
            await self.actor.free.remote(unload_models)
        except _actor_errors():
            return

    async def stop(self) -> None:
        await self.interrupt(None)


class RayBackend:
    """Connects to Ray and names the workers; `connect` blocks (run it in a thread)."""

    def __init__(self, config: RayConfig, spec: RuntimeSpec) -> None:
        self.config = config
        self.spec = spec
        self.workers: list[RayDeviceWorker] = []
        self.gpus_per_worker = 0

    def connect(self) -> list[RayDeviceWorker]:
        import ray

        runtime_env = {"env_vars": {"PYTHONPATH": _pythonpath(), "OMP_NUM_THREADS": "1"}}
        options: dict[str, Any] = {
            "namespace": self.config.namespace,
            "runtime_env": runtime_env,
            "include_dashboard": False,
            "log_to_driver": True,
            "configure_logging": False,
        }
        if self.config.owns_cluster:
            count = self.config.workers or 1
            ray.init(num_cpus=count, **options)
        else:
            ray.init(address=self.config.address, **options)
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        count = self.config.workers or max(gpus, 1)
        self.gpus_per_worker = 1 if gpus >= count else 0
        log.info(
            "Ray: %s, %d worker(s) on %s",
            "local instance" if self.config.owns_cluster else f"cluster at {self.config.address}",
            count,
            "one GPU each" if self.gpus_per_worker else "one CPU slot each",
        )
        self.workers = [self._worker(index) for index in range(count)]
        return self.workers

    def _worker(self, index: int) -> RayDeviceWorker:
        import ray

        name = f"loom-worker-{index}"
        labels = [*self.config.labels.get("*", []), *self.config.labels.get(str(index), [])]
        spec = replace(
            self.spec,
            name=name,
            labels=labels,
            force_cpu=self.spec.force_cpu or not self.gpus_per_worker,
            threads=self.spec.threads or (None if self.gpus_per_worker else 1),
        )
        actor_class = ray.remote(DeviceActor)
        options: dict[str, Any] = {
            "name": name,
            "namespace": self.config.namespace,
            "get_if_exists": True,
            "max_restarts": MAX_RESTARTS,
            "max_task_retries": 0,
            "max_concurrency": 4,
            "num_cpus": 0 if self.gpus_per_worker else 1,
            "num_gpus": self.gpus_per_worker,
        }
        if not self.config.owns_cluster:
            options["lifetime"] = "detached"

        def make() -> Any:
            return actor_class.options(**options).remote(spec)

        return RayDeviceWorker(name, frozenset(labels), make)

    def shutdown(self) -> None:
        """Leave a cluster's detached actors running (a restarted server re-attaches to them); end a
        local instance with everything in it."""
        import ray

        if ray.is_initialized():
            started = time.monotonic()
            ray.shutdown()
            log.info("disconnected from Ray in %.1f s", time.monotonic() - started)


def _actor_errors() -> tuple[type[BaseException], ...]:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return (RayActorError, ActorDiedError, ActorUnavailableError)


def _pythonpath() -> str:
    """Loom's checkout first, so actors import the same engine and nodes as the server."""
    extra = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (str(PROJECT_ROOT), extra) if p)


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}"
