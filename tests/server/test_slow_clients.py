"""A websocket client that stops reading is dropped; it never delays another client's events."""

from __future__ import annotations

import base64
import os
import socket
import time

from tests.server.conftest import Server, connect, events_until_done, graph


def silent_websocket(server: Server, client_id: str) -> socket.socket:
    """A websocket that completes its handshake and then never reads again (a tiny receive buffer,
    so the server's writes back up quickly)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /ws?clientId={client_id} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert b" 101 " in sock.recv(1024)
    return sock


def flood(count: int) -> dict[str, object]:
    return {
        "1": {"class_type": "FloodPreviews", "inputs": {"count": count, "size": 65536, "value": 1.0}},
        "2": {"class_type": "ShowNumber", "inputs": {"value": ["1", 0]}},
    }


async def test_a_silent_client_does_not_delay_another_clients_events(server: Server) -> None:
    silent = silent_websocket(server, "silent")
    try:
        async with connect(server) as client, client.websocket("listener") as ws:
            flooding = await client.queue(flood(600), "silent")  # about 40 MB for the silent client
            asked = time.monotonic()
            mine = await client.queue(graph(color=8, prefix="listener"), "listener")
            events = await events_until_done(ws, mine, timeout=30)
            took = time.monotonic() - asked
            history = await client.get("/history")
    finally:
        silent.close()
    assert any(name == "execution_success" and data["prompt_id"] == mine for name, data in events)
    assert history[flooding]["status"]["status_str"] == "success"
    assert took < 15, took
