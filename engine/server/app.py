"""The aiohttp application: `create_app(config)` for tests and embedding, `serve(config)` for main.py."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from engine import folders as folder_config
from engine import threads
from engine.cache import OutputCache
from engine.comfy_compat.prompt_server import PromptServer
from engine.custom_nodes import load_custom_nodes
from engine.executor import Executor
from engine.queue import PromptStore
from engine.server import (
    routes_files,
    routes_frontend,
    routes_info,
    routes_internal,
    routes_jobs,
    routes_packs,
    routes_queue,
    routes_user,
    web_ui,
)
from engine.server.config import ServerConfig, ServerConfigError
from engine.server.hub import Hub
from engine.server.keys import CONFIG, EXECUTOR, HUB, PACKS, REGISTRY, STORE, WORKER
from engine.server.security import MIDDLEWARES
from engine.server.userdata import UserStore
from engine.server.worker import Worker

if TYPE_CHECKING:
    from engine.scaleout.ray_backend import RayBackend
    from engine.scaleout.runtime import RuntimeSpec

log = logging.getLogger("loom.server")
# From SIGTERM/SIGINT to the process's end, whatever is still running.
STOP_DEADLINE_S = 5.0

COMFY_ROUTES = (
    routes_queue.routes,
    routes_jobs.routes,
    routes_files.routes,
    routes_info.routes,
    routes_packs.routes,
    routes_user.routes,
    routes_frontend.routes,
)


def create_app(config: ServerConfig) -> web.Application:
    """ComfyUI's routes (each also under /api/), Loom's /api/ additions, and the worker."""
    # Uploads are streamed and limited by their own check; this bounds every other body.
    app = web.Application(middlewares=MIDDLEWARES, client_max_size=config.max_upload_bytes + (1 << 20))
    app[CONFIG] = config
    for table in COMFY_ROUTES:
        for route in table:
            if isinstance(route, web.RouteDef):
                app.router.add_route(route.method, route.path, route.handler, **route.kwargs)
                app.router.add_route(route.method, "/api" + route.path, route.handler, **route.kwargs)
    app.add_routes(routes_jobs.api_routes)
    app.add_routes(routes_internal.routes)
    app[routes_user.USERS] = UserStore(config.user_root, config.multi_user, config.max_user_file_bytes)
    routes_frontend.setup_templates(app)
    if config.front_end_root is None:
        web_ui.setup(app)
    app.cleanup_ctx.append(_services)
    # Another front end's files are served from `/` on down: added after the packs' routes (which
    # load at start-up), so that a file route cannot hide them.
    app.on_startup.append(lambda app: _front_end(app, config))
    app.on_shutdown.append(_close_websockets)
    return app


async def _services(app: web.Application) -> AsyncIterator[None]:
    """Open the queue, build the registry and executor, run the worker and the event publisher."""
    config = app[CONFIG]
    folder_config.configure(config.folders)
    await asyncio.to_thread(_prepare_folders, config)
    if config.registry is None:
        from nodes import builtin_registry

        config.registry = builtin_registry()
    app[REGISTRY] = config.registry
    # Packs load before the server answers (as in ComfyUI), and may add routes of their own; they see
    # this application and the registry while they import. The folders are custom_nodes/ and those
    # of --extra-model-paths-config files.
    PromptServer.instance.attach(app, asyncio.get_running_loop(), config.registry)
    app[PACKS] = load_custom_nodes(
        config.registry,
        config.folders.custom_nodes,
        disable_all=config.disable_custom_nodes,
        state_dir=config.database.parent,
    )
    app[STORE] = store = await asyncio.to_thread(PromptStore, config.database)
    app[EXECUTOR] = executor = Executor(config.registry, OutputCache(config.cache_mode, config.cache_lru))
    app[HUB] = hub = Hub()
    hub.bind(asyncio.get_running_loop())
    backend = None
    if config.ray is None:
        worker = Worker(store, executor, hub, config.preview_method, force_cpu=config.cpu)
    else:
        worker, backend = await _scale_out(config, store, executor, hub)
    app[WORKER] = worker
    PromptServer.instance.bind(app, hub.send_threadsafe, asyncio.get_running_loop(), store, worker)
    routes_internal.forward_logs(app)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(hub.publish())]
    yield
    await worker.stop(grace=3.0)
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    if backend is not None:
        await asyncio.to_thread(backend.shutdown)
    store.close()


async def _scale_out(
    config: ServerConfig, store: PromptStore, executor: Executor, hub: Hub
) -> tuple[Worker, RayBackend]:
    """Connect to Ray (a local instance, or the cluster at --ray-address) and dispatch to its actors."""
    from engine.scaleout.ray_backend import RayBackend
    from engine.server.pool import PoolWorker

    assert config.ray is not None
    backend = RayBackend(config.ray, runtime_spec(config))
    workers = await asyncio.to_thread(backend.connect)
    pool = PoolWorker(
        store, executor, hub, config.preview_method, list(workers), config.folders, config.ray.routing
    )
    return pool, backend


def runtime_spec(config: ServerConfig) -> RuntimeSpec:
    """What every worker is built from: the server's model folders, packs and cache settings."""
    from engine.scaleout.runtime import RuntimeSpec

    assert config.ray is not None
    return RuntimeSpec(
        name="",
        models={kind: [str(p) for p in paths] for kind, paths in config.folders.models.items()},
        custom_nodes=[str(p) for p in config.folders.custom_nodes],
        disable_custom_nodes=config.disable_custom_nodes,
        node_modules=list(config.ray.node_modules),
        cache_mode=config.cache_mode,
        cache_lru=config.cache_lru,
        threads=threads.policy().override,
        force_cpu=config.cpu,
    )


async def _front_end(app: web.Application, config: ServerConfig) -> None:
    routes_frontend.setup_front_end(app, config)


async def _close_websockets(app: web.Application) -> None:
    if HUB in app:
        await app[HUB].close_all()


def _prepare_folders(config: ServerConfig) -> None:
    """ComfyUI empties the temp folder at start-up: previews are never kept."""
    folders = config.folders
    if config.clear_temp_on_start and folders.temp.is_dir():
        shutil.rmtree(folders.temp, ignore_errors=True)
    for path in (folders.output, folders.input, folders.temp):
        path.mkdir(parents=True, exist_ok=True)


def serve(config: ServerConfig, announce: Callable[[str], None] = print) -> None:
    """Run until SIGINT/SIGTERM; announces the URL (with the token, if one is needed) once it answers."""
    asyncio.run(_serve(config, announce))


async def _serve(config: ServerConfig, announce: Callable[[str], None]) -> None:
    from engine.server.console import setup_console

    setup_console(config.log_level)
    page = config.front_end_root
    log.info("Front end: %s", page if page is not None else "Loom's canvas (web/dist)")
    if config.preview_method != "none":
        log.info("Latent previews: %s", config.preview_method)
    # Validation and JSON parsing of big requests run in threads; a 1 ms GIL switch interval (5 ms
    # by default) lets the event loop take the GIL back sooner while they run.
    sys.setswitchinterval(0.001)
    token = config.require_token()
    hosts = config.listen_hosts()
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    for host in hosts:
        try:
            await web.TCPSite(runner, host, config.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise ServerConfigError(
                f"cannot listen on {host} port {config.port}: {exc.strerror or exc}"
            ) from None
    shown = f"[{hosts[0]}]" if ":" in hosts[0] else hosts[0]
    url = f"http://{shown}:{config.port}/" + (f"?token={token}" if token else "")
    announce(f"Loom is listening at {url} (ready {_process_age():.2f} s after launch)")
    sys.stdout.flush()
    _freeze_heap()
    runner.app[WORKER].warm_up(then=_freeze_heap)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        _exit_after(STOP_DEADLINE_S)
        await runner.cleanup()


def _freeze_heap() -> None:
    """Keep the garbage collector off the start-up heap (modules, the registry, torch): a full
    collection walking it held the GIL for 0.3-0.45 s, the event loop's longest stalls while a big
    request was validated in a thread. Young collections run less often for the same reason."""
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _exit_after(seconds: float) -> None:
    """A node that never returns, or a request still computing in a thread, would keep the process
    alive after a stop (threads are joined at exit); past the deadline it ends anyway. A prompt cut
    off this way is still 'running' in the database and runs again at the next start."""

    def watchdog() -> None:
        time.sleep(seconds)
        log.error("still stopping after %.0f s (a node or request did not finish); exiting now", seconds)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    threading.Thread(target=watchdog, name="loom-stop-watchdog", daemon=True).start()


def _process_age() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()
