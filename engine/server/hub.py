"""Websocket clients and the events sent to them, in ComfyUI's message shapes.

Events come from the executor's thread; `send_threadsafe` hands them to the event loop, where one
publisher task sends them in order. An event for a prompt submitted with a client_id goes to that
client only; one without a client_id goes to everyone (as ComfyUI does).

Each client has its own bounded outbox and sender task, so a client that stops reading delays
nobody else: when its outbox overflows, or one frame waits longer than SEND_TIMEOUT_S, it is
disconnected (a client that reconnects gets the current status again).
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
Frame = bytes | str
# Frames waiting for one client before it is dropped as too slow (a sampling run sends a few per step).
OUTBOX_FRAMES = 256
SEND_TIMEOUT_S = 5.0


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
        self._outboxes: dict[web.WebSocketResponse, tuple[asyncio.Queue[Frame], asyncio.Task[None]]] = {}

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
                    self._deliver(ws, frame)

    def _deliver(self, ws: web.WebSocketResponse, frame: Frame) -> None:
        """Put a frame in the client's outbox; never waits for the client."""
        for gone in [w for w in self._outboxes if w.closed]:
            self._outboxes.pop(gone)[1].cancel()
        if ws not in self._outboxes:
            outbox: asyncio.Queue[Frame] = asyncio.Queue(OUTBOX_FRAMES)
            self._outboxes[ws] = (outbox, asyncio.create_task(self._drain(ws, outbox)))
        try:
            self._outboxes[ws][0].put_nowait(frame)
        except asyncio.QueueFull:
            self._drop(ws, f"{OUTBOX_FRAMES} messages are waiting for it")

    async def _drain(self, ws: web.WebSocketResponse, outbox: asyncio.Queue[Frame]) -> None:
        while not ws.closed:
            frame = await outbox.get()
            try:
                async with asyncio.timeout(SEND_TIMEOUT_S):
                    await _send(ws, frame)
            except TimeoutError:
                self._drop(ws, f"one message waited more than {SEND_TIMEOUT_S:g} s")
                return

    def _drop(self, ws: web.WebSocketResponse, why: str) -> None:
        sid = next((s for s, w in self.sockets.items() if w is ws), None)
        log.warning("dropping websocket client %s: it is not reading (%s)", sid, why)
        if sid is not None:
            del self.sockets[sid]
        outbox = self._outboxes.pop(ws, None)
        if outbox is not None and outbox[1] is not asyncio.current_task():
            outbox[1].cancel()
        # close() would wait to send a close frame the client will not read: end the connection.
        ws._set_code_close_transport(WSCloseCode.POLICY_VIOLATION)

    async def close_all(self) -> None:
        for _, task in self._outboxes.values():
            task.cancel()
        self._outboxes.clear()
        for ws in list(self.sockets.values()):
            try:
                async with asyncio.timeout(1.0):
                    await ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")
            except TimeoutError:
                ws._set_code_close_transport(WSCloseCode.GOING_AWAY)
        self.sockets.clear()


async def _send(ws: web.WebSocketResponse, frame: Frame) -> None:
    """A client that went away mid-send is not the other clients' problem."""
    with contextlib.suppress(ConnectionError, RuntimeError):
        if isinstance(frame, bytes):
            await ws.send_bytes(frame)
        else:
            await ws.send_str(frame)
