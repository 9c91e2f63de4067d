"""`server.PromptServer.instance`: what packs use of ComfyUI's server, bound to Loom's at start-up.

Packs add HTTP routes with `@PromptServer.instance.routes.get("/my_pack/thing")` when they are
imported, and push messages to the browser with `send_sync(event, data, sid)`. Loom's server calls
`bind(app, send)` after loading packs: it adds the routes to its application and gives the function
that sends a websocket message. Before binding (or without a server: the CLI, tests), messages are
dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

SendFunction = Callable[[str, Any, str | None], None]
PromptHandler = Callable[[dict[str, Any]], dict[str, Any]]


class PromptServer:
    instance: PromptServer

    def __init__(self) -> None:
        self.routes = web.RouteTableDef()
        self.app: web.Application | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.last_prompt_id: str | None = None
        self.on_prompt_handlers: list[PromptHandler] = []
        self._send: SendFunction | None = None

    def bind(
        self, app: web.Application, send: SendFunction, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        """Called once by Loom's server: serve the packs' routes and deliver their messages. Packs
        schedule coroutines on `loop` (the server's) from node code."""
        app.add_routes(self.routes)
        self.app = app
        self._send = send
        self.loop = loop

    def send_sync(self, event: str, data: Any, sid: str | None = None) -> None:
        if self._send is not None:
            self._send(event, data, sid)

    async def send(self, event: str, data: Any, sid: str | None = None) -> None:
        self.send_sync(event, data, sid)

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
