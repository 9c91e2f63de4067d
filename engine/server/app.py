"""The aiohttp application: `create_app(config)` for tests and embedding, `serve(config)` for main.py."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from engine import folders as folder_config
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
from engine.server.config import ServerConfig
from engine.server.hub import Hub
from engine.server.keys import CONFIG, EXECUTOR, HUB, PACKS, REGISTRY, STORE, WORKER
from engine.server.security import MIDDLEWARES
from engine.server.userdata import UserStore
from engine.server.worker import Worker

log = logging.getLogger("loom.server")

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
    # Packs load before the server answers (as in ComfyUI), and may add routes of their own.
    # The folders are custom_nodes/ and those of --extra-model-paths-config files.
    app[PACKS] = load_custom_nodes(
        config.registry, config.folders.custom_nodes, disable_all=config.disable_custom_nodes
    )
    app[STORE] = store = await asyncio.to_thread(PromptStore, config.database)
    app[EXECUTOR] = executor = Executor(config.registry, OutputCache(config.cache_mode, config.cache_lru))
    app[HUB] = hub = Hub()
    hub.bind(asyncio.get_running_loop())
    PromptServer.instance.bind(app, hub.send_threadsafe, asyncio.get_running_loop())
    app[WORKER] = worker = Worker(store, executor, hub, config.preview_method)
    routes_internal.forward_logs(app)
    tasks = [asyncio.create_task(worker.run()), asyncio.create_task(hub.publish())]
    yield
    await worker.stop()
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    store.close()


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
    token = config.require_token()
    runner = web.AppRunner(create_app(config), access_log=None)
    await runner.setup()
    hosts = [h.strip() for h in config.listen.split(",")]
    for host in hosts:
        await web.TCPSite(runner, host, config.port).start()
    shown = f"[{hosts[0]}]" if ":" in hosts[0] else hosts[0]
    url = f"http://{shown}:{config.port}/" + (f"?token={token}" if token else "")
    announce(f"Loom is listening at {url} (ready {_process_age():.2f} s after launch)")
    sys.stdout.flush()
    runner.app[WORKER].warm_up()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def _process_age() -> float:
    import psutil

    return time.time() - psutil.Process().create_time()
