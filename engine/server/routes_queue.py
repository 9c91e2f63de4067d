"""ComfyUI's queue and history routes: /prompt, /queue, /interrupt, /history."""

from __future__ import annotations

import asyncio

from aiohttp import web

from engine.server.http import ApiError, json_reply, query_int, read_json, string_list
from engine.server.keys import STORE, WORKER
from engine.server.submit import submit

routes = web.RouteTableDef()
MAX_HISTORY_PAGE = 100_000


@routes.post("/prompt")
async def post_prompt(request: web.Request) -> web.Response:
    return web.json_response(await submit(request.app, await read_json(request)))


@routes.get("/prompt")
async def get_prompt(request: web.Request) -> web.Response:
    return web.json_response(request.app[WORKER].status()["status"])


@routes.get("/queue")
async def get_queue(request: web.Request) -> web.Response:
    running, pending = await asyncio.to_thread(request.app[STORE].queue)
    return await json_reply(
        {"queue_running": [i.as_list() for i in running], "queue_pending": [i.as_list() for i in pending]}
    )


@routes.post("/queue")
async def post_queue(request: web.Request) -> web.Response:
    body = await read_json(request)
    store, worker = request.app[STORE], request.app[WORKER]
    if body.get("clear"):
        store.clear_pending()
    store.delete_pending(string_list(body, "delete"))
    worker.queue_changed()
    worker.release([i for i in worker.waiting() if store.state(i) is None])
    return web.Response()


@routes.post("/interrupt")
async def post_interrupt(request: web.Request) -> web.Response:
    body = await read_json(request, allow_empty=True)
    prompt_id = body.get("prompt_id")
    if prompt_id is not None and not isinstance(prompt_id, str):
        raise ApiError("prompt_id must be a string")
    request.app[WORKER].interrupt(prompt_id)
    return web.Response()


@routes.get("/history")
async def get_history(request: web.Request) -> web.Response:
    max_items = query_int(request, "max_items", None, 0, MAX_HISTORY_PAGE)
    offset = query_int(request, "offset", -1, -1, 2**62)
    assert offset is not None
    return await json_reply(await asyncio.to_thread(request.app[STORE].history, max_items, offset))


@routes.get("/history/{prompt_id}")
async def get_history_entry(request: web.Request) -> web.Response:
    prompt_id = request.match_info["prompt_id"]
    entry = await asyncio.to_thread(request.app[STORE].history_entry, prompt_id)
    return await json_reply({prompt_id: entry} if entry else {})


@routes.post("/history")
async def post_history(request: web.Request) -> web.Response:
    body = await read_json(request)
    store = request.app[STORE]
    deleted = string_list(body, "delete")
    if body.get("clear"):
        await asyncio.to_thread(store.clear_history)
    if deleted:
        await asyncio.to_thread(store.delete_history, deleted)
    await asyncio.to_thread(store.reclaim)
    return web.Response()
