"""Custom node packs over HTTP: their status (`/custom_nodes`) and their front-end files
(`/extensions`, `/extensions/<pack>/<file>`)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web

from engine.folders import UnsafePathError, safe_join
from engine.server.keys import CONFIG, PACKS

routes = web.RouteTableDef()


@routes.get("/custom_nodes")
async def custom_nodes(request: web.Request) -> web.Response:
    """Every pack found at start-up: name, path, status (loaded / failed), error, import time, nodes."""
    return web.json_response(request.app[PACKS].to_json())


@routes.get("/extensions")
async def extensions(request: web.Request) -> web.Response:
    """The front-end scripts of loaded packs (and of the served front end's own `extensions/`
    folder, as ComfyUI lists them), as URLs the browser imports."""
    return web.json_response(await asyncio.to_thread(_scripts, _folders(request.app)))


@routes.get("/extensions/{pack}/{path:.+}")
async def extension_file(request: web.Request) -> web.StreamResponse:
    folder = _folders(request.app).get(request.match_info["pack"])
    if folder is None:
        raise web.HTTPNotFound()
    try:
        path = safe_join(folder, request.match_info["path"])
    except UnsafePathError as exc:
        raise web.HTTPForbidden() from exc
    if not await asyncio.to_thread(path.is_file):
        raise web.HTTPNotFound()
    return web.FileResponse(path)


def _folders(app: web.Application) -> dict[str, Path]:
    """Pack name -> web folder; the served front end's own `extensions/<name>/` folders (its `core`
    scripts) win over a pack of the same name, so a pack cannot take their URLs."""
    folders = dict(app[PACKS].web_directories())
    root = app[CONFIG].front_end_root
    if root is not None and (root / "extensions").is_dir():
        for own in (root / "extensions").iterdir():
            if own.is_dir():
                folders[own.name] = own
    return folders


def _scripts(folders: dict[str, Path]) -> list[str]:
    return [
        f"/extensions/{name}/{script.relative_to(folder).as_posix()}"
        for name, folder in sorted(folders.items())
        for script in sorted(folder.rglob("*.js"))
    ]
