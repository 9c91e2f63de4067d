"""ComfyUI's /internal/ routes, which only its front end calls: logs, folder paths, folder files.

ComfyUI mounts them without an /api/ twin; Loom does the same.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from aiohttp import web

from engine.server.console import LOGS, Entry, Listener, terminal_size
from engine.server.http import ApiError, read_json
from engine.server.hub import Hub
from engine.server.keys import CONFIG, HUB

routes = web.RouteTableDef()
SUBSCRIBERS = web.AppKey("log_subscribers", set)


@routes.get("/internal/logs")
async def logs(request: web.Request) -> web.Response:
    return web.json_response(LOGS.text())


@routes.get("/internal/logs/raw")
async def raw_logs(request: web.Request) -> web.Response:
    return web.json_response({"entries": LOGS.snapshot(), "size": terminal_size()})


@routes.patch("/internal/logs/subscribe")
async def subscribe(request: web.Request) -> web.Response:
    body = await read_json(request)
    client_id, enabled = body.get("clientId"), body.get("enabled")
    if not isinstance(client_id, str) or not isinstance(enabled, bool):
        raise ApiError("send {clientId: string, enabled: boolean}")
    subscribers: set[str] = request.app[SUBSCRIBERS]
    if enabled:
        subscribers.add(client_id)
    else:
        subscribers.discard(client_id)
    return web.Response()


@routes.get("/internal/folder_paths")
async def folder_paths(request: web.Request) -> web.Response:
    folders = request.app[CONFIG].folders
    paths = {kind: [str(p) for p in found] for kind, found in folders.models.items()}
    paths["custom_nodes"] = [str(p) for p in folders.custom_nodes]
    return web.json_response(paths)


@routes.get("/internal/files/{directory_type}")
async def files(request: web.Request) -> web.Response:
    """The plain files directly in output/, input/ or temp/, newest first."""
    kind = request.match_info["directory_type"]
    if kind not in ("output", "input", "temp"):
        raise ApiError("Invalid directory type")
    folder = request.app[CONFIG].folders.by_type(kind)
    return web.json_response(await asyncio.to_thread(_newest_first, folder))


def _newest_first(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    entries = [e for e in os.scandir(folder) if e.is_file()]
    return [e.name for e in sorted(entries, key=lambda e: -e.stat().st_mtime)]


def forward_logs(app: web.Application) -> None:
    """Send each new log line to the clients that subscribed (ComfyUI's `logs` event)."""
    subscribers: set[str] = set()
    app[SUBSCRIBERS] = subscribers
    hub: Hub = app[HUB]

    def send(entries: list[Entry]) -> None:
        for client_id in list(subscribers):
            if client_id not in hub.sockets:
                subscribers.discard(client_id)  # the client went away
                continue
            hub.send_threadsafe("logs", {"entries": entries, "size": None}, client_id)

    LOGS.listeners.append(send)
    app.on_cleanup.append(lambda _app: _remove(send))


async def _remove(listener: Listener) -> None:
    if listener in LOGS.listeners:
        LOGS.listeners.remove(listener)
