"""Read-mostly routes: node schemas, model lists, system stats, features, /free, and the websocket."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any

from aiohttp import WSMsgType, web

from engine.registry import node_info
from engine.server.http import read_json
from engine.server.keys import CONFIG, HUB, REGISTRY, WORKER

routes = web.RouteTableDef()

LOOM_VERSION = "0.1.0"
MAX_CLIENT_ID = 200


@routes.get("/object_info")
async def object_info(request: web.Request) -> web.Response:
    # Combo choices may list folders (LoadImage's images), so this runs off the event loop.
    return web.json_response(await asyncio.to_thread(request.app[REGISTRY].object_info))


@routes.get("/object_info/{node_class}")
async def object_info_one(request: web.Request) -> web.Response:
    spec = request.app[REGISTRY].get(request.match_info["node_class"])
    if spec is None:
        return web.json_response({})
    return web.json_response({spec.id: await asyncio.to_thread(node_info, spec)})


@routes.get("/models")
async def model_kinds(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[CONFIG].folders.models))


@routes.get("/models/{folder}")
async def model_files(request: web.Request) -> web.Response:
    folders, kind = request.app[CONFIG].folders, request.match_info["folder"]
    if kind not in folders.models:
        return web.json_response({"error": f"no model folder {kind[:100]!r}"}, status=404)
    return web.json_response(await asyncio.to_thread(folders.model_files, kind))


# What ComfyUI lists as model files; an embeddings folder may also hold previews and notes.
MODEL_EXTENSIONS = (".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft")


@routes.get("/embeddings")
async def embeddings(request: web.Request) -> web.Response:
    """Names usable as `embedding:name` in a prompt (file names without extension)."""
    names = await asyncio.to_thread(request.app[CONFIG].folders.model_files, "embeddings")
    return web.json_response(
        [str(Path(n).with_suffix("")) for n in names if n.lower().endswith(MODEL_EXTENSIONS)]
    )


@routes.get("/system_stats")
async def system_stats(request: web.Request) -> web.Response:
    stats = await asyncio.to_thread(_system_stats, request.app)
    # Every worker that runs prompts: this process, or the Ray actors (docs/scale-out.md).
    stats["workers"] = await request.app[WORKER].describe()
    return web.json_response(stats)


def _system_stats(app: web.Application) -> dict[str, Any]:
    import psutil

    memory = psutil.virtual_memory()
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = ""
    device = {
        "name": "cpu",
        "type": "cpu",
        "index": None,
        "vram_total": memory.total,
        "vram_free": memory.available,
        "torch_vram_total": 0,
        "torch_vram_free": 0,
    }
    return {
        "system": {
            "os": os.name if sys.platform != "linux" else "posix",
            "ram_total": memory.total,
            "ram_free": memory.available,
            "comfyui_version": LOOM_VERSION,
            "loom_version": LOOM_VERSION,
            "python_version": sys.version,
            "pytorch_version": torch_version,
            "embedded_python": False,
            "argv": sys.argv,
            "platform": platform.platform(),
        },
        "devices": [device],
    }


@routes.get("/features")
async def features(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    return web.json_response({"supports_preview_metadata": False, "max_upload_size": config.max_upload_bytes})


@routes.post("/free")
async def free(request: web.Request) -> web.Response:
    """`free_memory` drops cached node outputs; `unload_models` moves models off the GPU and forgets
    loaded checkpoints (ComfyUI's POST /free)."""
    body = await read_json(request, allow_empty=True)
    if body.get("free_memory"):
        request.app[WORKER].free_cache()
    if body.get("unload_models"):
        from engine.diffusion.devices import unload_models

        request.app[WORKER].unload_models()  # Ray workers unload their own (docs/scale-out.md)
        await asyncio.to_thread(unload_models)
    return web.Response()


@routes.get("/ws")
async def websocket(request: web.Request) -> web.WebSocketResponse:
    hub, worker = request.app[HUB], request.app[WORKER]
    ws = web.WebSocketResponse(heartbeat=30, max_msg_size=1 << 20)
    await ws.prepare(request)
    sid = request.query.get("clientId", "")[:MAX_CLIENT_ID] or uuid.uuid4().hex
    hub.sockets[sid] = ws
    try:
        await ws.send_json({"type": "status", "data": {**worker.status(), "sid": sid}})
        client, node = hub.current
        if node is not None and client == sid and worker.running is not None:
            running = worker.running.prompt_id
            await ws.send_json(
                {"type": "executing", "data": {"node": node, "display_node": node, "prompt_id": running}}
            )
        async for message in ws:
            if message.type == WSMsgType.ERROR:
                break
    finally:
        if hub.sockets.get(sid) is ws:
            del hub.sockets[sid]
    return ws
