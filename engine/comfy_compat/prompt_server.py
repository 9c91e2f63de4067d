"""`server.PromptServer.instance`: what packs use of ComfyUI's server, usable from the moment they are
imported and bound to Loom's server when it starts.

While packs import, `app` is already an aiohttp application (Loom's own, once the server attaches it
before loading packs; a stand-alone one without a server), `routes` a route table, `prompt_queue`
ComfyUI's queue methods, `supports` the features Loom has, and `send_sync` a no-op. Loom's server
calls `attach(app, loop, registry)` before loading packs and `bind(app, send, loop, store, worker)`
after: the routes packs declared are added and messages reach the websocket.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from enum import IntEnum
from typing import Any

from aiohttp import web

from engine.comfy_compat.prompt_queue import PromptQueue

log = logging.getLogger(__name__)

SendFunction = Callable[[str, Any, str | None], None]
PromptHandler = Callable[[dict[str, Any]], dict[str, Any]]


class BinaryEventTypes(IntEnum):
    """Kinds of binary websocket frames, as ComfyUI numbers them."""

    PREVIEW_IMAGE = 1
    UNENCODED_PREVIEW_IMAGE = 2
    TEXT = 3
    PREVIEW_IMAGE_WITH_METADATA = 4


class PromptServer:
    instance: PromptServer

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.app: web.Application = web.Application()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.prompt_queue = PromptQueue()
        self.registry: Any = None
        self.supports = ["custom_nodes_from_web"]
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.number = 0
        self.sockets: dict[str, Any] = {}
        self.sockets_metadata: dict[str, Any] = {}
        self.on_prompt_handlers: list[PromptHandler] = []
        self._send: SendFunction | None = None

    def attach(self, app: web.Application, loop: asyncio.AbstractEventLoop | None, registry: Any) -> None:
        """Before packs load: they see Loom's application and node registry."""
        self.app, self.loop, self.registry = app, loop, registry

    def bind(
        self,
        app: web.Application,
        send: SendFunction,
        loop: asyncio.AbstractEventLoop | None = None,
        store: Any = None,
        worker: Any = None,
    ) -> None:
        """After packs load: serve their routes, deliver their messages, open the queue to them."""
        app.add_routes(self.routes)
        self.app = app
        self._send = send
        self.loop = loop
        if store is not None and loop is not None:
            self.prompt_queue.bind(store, worker, loop)

    def send_sync(self, event: str | int, data: Any, sid: str | None = None) -> None:
        """A JSON message, or one of ComfyUI's binary events (`BinaryEventTypes`): a preview
        `(format, PIL image, max size)` goes out as Loom's preview frame of the running node, TEXT as
        `progress_text`."""
        if self._send is None:
            return
        if isinstance(event, int):
            translated = self._binary_event(event, data)
            if translated is not None:
                self._send(*translated, sid)
            return
        self._send(event, data, sid)

    def _binary_event(self, event: int, data: Any) -> tuple[str, Any] | None:
        if event == BinaryEventTypes.TEXT:
            node, text = (data[0], data[1]) if isinstance(data, (tuple, list)) else (self.last_node_id, data)
            return "progress_text", {"text": text, "node": node}
        if event in (BinaryEventTypes.PREVIEW_IMAGE, BinaryEventTypes.UNENCODED_PREVIEW_IMAGE):
            return self._preview(data)
        if event == BinaryEventTypes.PREVIEW_IMAGE_WITH_METADATA:
            return self._preview(data[0])
        log.warning("binary event %s from a pack is not one Loom sends; dropped", event)
        return None

    def _preview(self, data: Any) -> tuple[str, Any] | None:
        import io

        image_format, image = (data[0], data[1]) if isinstance(data, (tuple, list)) else ("JPEG", data)
        image_format = "PNG" if str(image_format).upper() == "PNG" else "JPEG"
        if not isinstance(image, bytes):
            buffer = io.BytesIO()
            (image.convert("RGB") if image_format == "JPEG" else image).save(buffer, format=image_format)
            image = buffer.getvalue()
        details = {"node": self.last_node_id, "prompt_id": self.last_prompt_id}
        return "preview_image", {"format": image_format, "image": image, **details}

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

    async def send_json(self, event: str, data: Any, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

    def send_progress_text(self, text: str, node_id: str, sid: str | None = None) -> None:
        """Text shown on a node while it runs (ComfyUI sends it as a binary TEXT frame; Loom as a
        `progress_text` JSON message)."""
        self.send_sync("progress_text", {"text": text, "node": node_id}, sid or self.client_id)

    def add_on_prompt_handler(self, handler: PromptHandler) -> None:
        self.on_prompt_handlers.append(handler)

    def trigger_on_prompt(self, json_data: dict[str, Any]) -> dict[str, Any]:
        """Let packs rewrite a submitted prompt, as ComfyUI does before validation; a handler that
        raises is logged and skipped."""
        for handler in self.on_prompt_handlers:
            try:
                json_data = handler(json_data)
            except Exception:
                log.exception("on_prompt handler %r failed; prompt passed on unchanged", handler)
        return json_data


PromptServer.instance = PromptServer()
