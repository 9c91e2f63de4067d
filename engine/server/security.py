"""Middlewares: JSON errors instead of tracebacks, same-origin writes, loopback Host names, tokens.

- A browser page on another site can POST to a local server; it cannot forge the `Origin` header,
  so a write (or websocket) whose Origin host differs from Host, or is `null`, is refused.
- DNS rebinding makes the attacker's name resolve to 127.0.0.1, so Origin and Host agree; while
  listening on loopback only, the Host header must therefore name loopback too.
- A write with no Origin is refused if the browser says it is cross-site (Sec-Fetch-Site) or its
  body is text/plain (what a cross-site form or no-cors fetch sends without a preflight).
- Beyond loopback, every request needs the token, as `Authorization: Bearer`, `?token=` (for
  websockets and <img> URLs, which cannot set headers), or the cookie that `?token=` sets (so the
  canvas's own relative asset URLs work).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import sqlite3
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler

from engine.server.http import ApiError, error
from engine.server.keys import CONFIG

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
TOKEN_COOKIE = "loom_token"


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return web.json_response(exc.body, status=exc.status)
    except web.HTTPException:
        raise
    except HttpProcessingError as exc:
        return error(400, f"malformed request: {str(exc)[:200]}")
    except sqlite3.Error as exc:
        return _database_error(request, exc)
    except Exception as exc:
        log.exception("%s %s failed", request.method, request.path)
        return error(500, f"internal error: {type(exc).__name__}: {str(exc)[:300]}")


@web.middleware
async def same_origin(request: web.Request, handler: Handler) -> web.StreamResponse:
    config = request.app[CONFIG]
    if config.loopback_only and not _is_loopback_host(request.host):
        return error(403, f"Host {request.host[:100]!r} is not a loopback name; use 127.0.0.1 or localhost")
    writes = request.method not in SAFE_METHODS or request.headers.get("Upgrade", "").lower() == "websocket"
    origin = request.headers.get("Origin")
    if writes and origin is not None and (origin == "null" or urlsplit(origin).netloc != request.host):
        return error(403, f"cross-origin request from {origin[:100]!r} refused")
    if writes and origin is None:
        # Browsers that send no Origin still send Sec-Fetch-Site; and only a page elsewhere (a form,
        # a no-cors fetch) has a reason to send JSON as text/plain, the one type that needs no CORS.
        if request.headers.get("Sec-Fetch-Site", "").lower() == "cross-site":
            return error(403, "cross-site request refused (Sec-Fetch-Site: cross-site)")
        if request.content_type == "text/plain":
            return error(
                415, "a write without an Origin header must not be text/plain; send application/json"
            )
    return await handler(request)


@web.middleware
async def require_token(request: web.Request, handler: Handler) -> web.StreamResponse:
    token = request.app[CONFIG].token
    if token is None:
        return await handler(request)
    header = request.headers.get("Authorization", "")
    from_query = request.query.get("token", "")
    given = (
        header[7:] if header.startswith("Bearer ") else from_query or request.cookies.get(TOKEN_COOKIE, "")
    )
    if not hmac.compare_digest(given.encode(), token.encode()):
        refused = error(401, "a valid token is required (Authorization: Bearer TOKEN or ?token=TOKEN)")
        refused.headers["WWW-Authenticate"] = "Bearer"
        return refused
    response = await handler(request)
    if from_query and not response.prepared:
        # The canvas opened as /?token=... loads its own scripts and images by relative URL: the
        # cookie carries the token to them. SameSite=Strict: no other site's page can send it.
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/")
    return response


def _database_error(request: web.Request, exc: sqlite3.Error) -> web.Response:
    """The queue database refused: 507 when it is full, 503 when it is damaged; both name the file."""
    path = request.app[CONFIG].database
    if "full" in str(exc):
        log.error("%s %s: the database %s is full: %s", request.method, request.path, path, exc)
        return error(507, f"the queue database {path} is full (no space left); free disk space and retry")
    log.error("%s %s: the database %s failed: %s", request.method, request.path, path, exc)
    return error(
        503,
        f"the queue database {path} cannot be used ({str(exc)[:200]}); see 'Recovering the database' in"
        " docs/api.md",
    )


def _is_loopback_host(host: str) -> bool:
    if host.startswith("["):
        name = host[1:].split("]", 1)[0]
    elif host.count(":") > 1:
        name = host
    else:
        name = host.split(":", 1)[0]
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


MIDDLEWARES = (json_errors, same_origin, require_token)
