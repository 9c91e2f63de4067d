"""Small request helpers: JSON bodies with limits, typed query parameters, JSON errors."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from engine.server.keys import CONFIG

# Bodies up to this size are parsed on the event loop (a thread hop costs more than parsing them).
INLINE_PARSE_BYTES = 64 * 1024


class ApiError(Exception):
    """A client mistake; the error middleware answers it as `{"error": message, ...}` with `status`."""

    def __init__(self, message: str, status: int = 400, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": message, **extra}


def error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def read_json(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any]:
    """The body as a JSON object; 413 past the size limit, 400 for anything that is not an object."""
    limit = request.app[CONFIG].max_json_bytes
    if request.content_length is not None and request.content_length > limit:
        raise ApiError(f"request body is larger than {limit} bytes", 413)
    chunks, size = [], 0
    async for chunk in request.content.iter_chunked(1 << 16):
        size += len(chunk)
        if size > limit:
            raise ApiError(f"request body is larger than {limit} bytes", 413)
        chunks.append(chunk)
    body = b"".join(chunks)
    if allow_empty and not body.strip():
        return {}
    try:
        # Parsing megabytes takes a while: big bodies are parsed in a thread, off the event loop.
        if len(body) > INLINE_PARSE_BYTES:
            value = await asyncio.to_thread(json.loads, body, parse_constant=_no_constants)
        else:
            value = json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:
        raise ApiError(f"request body is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise ApiError(f"request body must be a JSON object, not {type(value).__name__}")
    return value


async def json_reply(value: Any) -> web.Response:
    """A JSON response serialized in a thread (for answers that can be megabytes: queue, history)."""
    text = await asyncio.to_thread(json.dumps, value)
    return web.Response(text=text, content_type="application/json")


def _no_constants(name: str) -> None:
    """NaN and Infinity are not JSON; Python accepts them, SQLite's JSON functions do not."""
    raise ValueError(f"{name} is not valid JSON")


def query_int(request: web.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ApiError(f"{name} must be between {low} and {high}, got {value}")
    return value


def string_list(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ApiError(f"{name} must be a list of strings")
    return value
