"""ComfyUI's user routes: /users, /settings, /userdata (v1 and v2), answered from `UserStore`.

The official front end keeps its settings, saved workflows, keybindings and templates here. Status
codes and bodies follow ComfyUI's `app/user_manager.py` and `app/app_settings.py`: 400 for a
missing name, 403 for a path outside the user's folder or an unknown user, 404 for a missing
file, 409 when `overwrite=false` meets an existing file.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from engine.server.http import ApiError, read_json
from engine.server.userdata import UserDataError, UserStore

routes = web.RouteTableDef()
USERS = web.AppKey("users", UserStore)


def _user(request: web.Request) -> str:
    return _checked(request.app[USERS].user_id, request.headers.get("comfy-user"))


def _checked(call: Any, *args: Any) -> Any:
    try:
        return call(*args)
    except UserDataError as exc:
        raise ApiError(str(exc), exc.status) from None


def _path(request: web.Request, param: str = "file") -> Path:
    return _checked(request.app[USERS].resolve, _user(request), request.match_info.get(param, ""))


def _flag(request: web.Request, name: str, default: str) -> bool:
    return request.query.get(name, default).lower() == "true"


@routes.get("/users")
async def get_users(request: web.Request) -> web.Response:
    store = request.app[USERS]
    if store.multi_user:
        return web.json_response({"storage": "server", "users": store.users})
    folder = store.user_folder(_user(request))
    return web.json_response({"storage": "server", "migrated": folder.exists()})


@routes.post("/users")
async def post_users(request: web.Request) -> web.Response:
    body = await read_json(request)
    name = body.get("username")
    if not isinstance(name, str):
        raise ApiError("username must be a string")
    return web.json_response(await asyncio.to_thread(_checked, request.app[USERS].add_user, name))


@routes.get("/settings")
async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(await asyncio.to_thread(request.app[USERS].settings, _user(request)))


@routes.get("/settings/{id}")
async def get_setting(request: web.Request) -> web.Response:
    settings = await asyncio.to_thread(request.app[USERS].settings, _user(request))
    return web.json_response(settings.get(request.match_info["id"]))


@routes.post("/settings")
async def post_settings(request: web.Request) -> web.Response:
    changes = await read_json(request)
    await asyncio.to_thread(request.app[USERS].update_settings, _user(request), changes)
    return web.Response()


@routes.post("/settings/{id}")
async def post_setting(request: web.Request) -> web.Response:
    try:
        value = json.loads(await request.read())
    except ValueError:
        raise ApiError("the setting's value must be JSON") from None
    change = {request.match_info["id"]: value}
    await asyncio.to_thread(request.app[USERS].update_settings, _user(request), change)
    return web.Response()


@routes.get("/userdata")
async def list_userdata(request: web.Request) -> web.Response:
    directory = request.query.get("dir", "")
    if not directory:
        raise ApiError("Directory not provided")
    store, user = request.app[USERS], _user(request)
    folder = _checked(store.resolve, user, directory)
    if not folder.is_dir():
        raise ApiError("Directory not found", 404)
    files = await asyncio.to_thread(store.list_files, folder, _flag(request, "recurse", ""))
    if _flag(request, "full_info", ""):
        return web.json_response([store.file_info(f, folder) for f in files])
    relative = [f.relative_to(folder).as_posix() for f in files]
    if _flag(request, "split", ""):
        return web.json_response([[r, *r.split("/")] for r in relative])
    return web.json_response(relative)


@routes.get("/v2/userdata")
async def list_userdata_v2(request: web.Request) -> web.Response:
    store, user = request.app[USERS], _user(request)
    wanted = request.query.get("path", "")
    base = store.user_folder(user)
    try:
        folder = store.resolve(user, wanted) if wanted else base
    except UserDataError:
        raise ApiError("Invalid path requested", 400) from None
    if not folder.exists():
        if folder == base:
            return web.json_response([])
        raise ApiError("Requested path not found", 404)
    if not folder.is_dir():
        raise ApiError("Requested path is not a directory", 400)
    return web.json_response(await asyncio.to_thread(store.tree, user, folder))


@routes.get("/userdata/{file}")
async def get_userdata(request: web.Request) -> web.StreamResponse:
    path = _path(request)
    if not path.is_file():
        raise ApiError("File not found", 404)
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


@routes.post("/userdata/{file}")
async def post_userdata(request: web.Request) -> web.Response:
    store, path = request.app[USERS], _path(request)
    if request.content_length is not None and request.content_length > store.max_file_bytes:
        raise ApiError(f"file is larger than {store.max_file_bytes} bytes", 413)
    data = await _read_limited(request, store.max_file_bytes)
    overwrite = request.query.get("overwrite", "true") != "false"
    await asyncio.to_thread(_checked, store.write, path, data, overwrite)
    return web.json_response(_answer(request, path))


@routes.delete("/userdata/{file}")
async def delete_userdata(request: web.Request) -> web.Response:
    path = _path(request)
    if not path.is_file():
        raise ApiError("File not found", 404)
    await asyncio.to_thread(path.unlink)
    return web.Response(status=204)


@routes.post("/userdata/{file}/move/{dest}")
async def move_userdata(request: web.Request) -> web.Response:
    store, source, dest = request.app[USERS], _path(request), _path(request, "dest")
    overwrite = request.query.get("overwrite", "true") != "false"
    await asyncio.to_thread(_checked, store.move, source, dest, overwrite)
    return web.json_response(_answer(request, dest))


def _answer(request: web.Request, path: Path) -> Any:
    store = request.app[USERS]
    base = store.user_folder(_user(request))
    if _flag(request, "full_info", "false"):
        return store.file_info(path, base)
    return path.relative_to(base).as_posix()


async def _read_limited(request: web.Request, limit: int) -> bytes:
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ApiError(f"file is larger than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)
