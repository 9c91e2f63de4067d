"""Custom node packs over HTTP: their status (`/custom_nodes`) and their front-end files
(`/extensions`, `/extensions/<pack>/<file>`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from engine.folders import UnsafePathError, safe_join
from engine.server.keys import PACKS

routes = web.RouteTableDef()


@routes.get("/custom_nodes")
async def custom_nodes(request: web.Request) -> web.Response:
    """Every pack found at start-up: name, path, status (loaded / failed), error, import time, nodes."""
    return web.json_response(request.app[PACKS].to_json())


@routes.get("/extensions")
async def extensions(request: web.Request) -> web.Response:
    """The front-end scripts of loaded packs, as URLs the browser imports."""
    return web.json_response(await asyncio.to_thread(_scripts, request.app[PACKS].web_directories()))


@routes.get("/extensions/{pack}/{path:.+}")
async def extension_file(request: web.Request) -> web.StreamResponse:
    folder = request.app[PACKS].web_directories().get(request.match_info["pack"])
    if folder is None:
        raise web.HTTPNotFound()
    try:
        path = safe_join(folder, request.match_info["path"])
    except UnsafePathError as exc:
        raise web.HTTPForbidden() from exc
    if not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def _scripts(folders: dict[str, Path]) -> list[str]:
    return [
        f"/extensions/{name}/{script.relative_to(folder).as_posix()}"
        for name, folder in sorted(folders.items())
        for script in sorted(folder.rglob("*.js"))
    ]
