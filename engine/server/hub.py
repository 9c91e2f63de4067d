"""Websocket clients and the events sent to them, in ComfyUI's message shapes.

Events come from the executor's thread; `send_threadsafe` hands them to the event loop, where one
publisher task sends them in order. An event for a prompt submitted with a client_id goes to that
client only; one without a client_id goes to everyone (as ComfyUI does).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import struct
from typing import Any

from aiohttp import WSCloseCode, web

log = logging.getLogger(__name__)

PREVIEW_IMAGE = 1
IMAGE_FORMATS = {"JPEG": 1, "PNG": 2}
Message = tuple[str, dict[str, Any], str | None]


def encode_preview(image_format: str, image: bytes) -> bytes:
    """ComfyUI's binary frame: event type 1, image format (1 JPEG, 2 PNG), then the encoded image."""
    return struct.pack(">II", PREVIEW_IMAGE, IMAGE_FORMATS.get(image_format.upper(), 1)) + image


class Hub:
    def __init__(self) -> None:
        self.sockets: dict[str, web.WebSocketResponse] = {}
        self._messages: asyncio.Queue[Message] = asyncio.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        # (client_id, node) of the node running now, so a client that reconnects mid-run catches up.
        self.current: tuple[str | None, str | None] = (None, None)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def send(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        """Queue a message (from the event loop's thread)."""
        self._messages.put_nowait((event, data, sid))

    def send_threadsafe(self, event: str, data: dict[str, Any], sid: str | None = None) -> None:
        assert self._loop is not None, "bind() runs at start-up"
        self._loop.call_soon_threadsafe(self._messages.put_nowait, (event, data, sid))

    async def publish(self) -> None:
        while True:
            event, data, sid = await self._messages.get()
            if event == "preview_image":
                frame: bytes | str = encode_preview(data["format"], data["image"])
            else:
                frame = json.dumps({"type": event, "data": data})
            targets = list(self.sockets.values()) if sid is None else [self.sockets.get(sid)]
            for ws in targets:
                if ws is not None and not ws.closed:
                    await _send(ws, frame)

    async def close_all(self) -> None:
        for ws in list(self.sockets.values()):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
        self.sockets.clear()


async def _send(ws: web.WebSocketResponse, frame: bytes | str) -> None:
    """A client that went away mid-send is not the other clients' problem."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
