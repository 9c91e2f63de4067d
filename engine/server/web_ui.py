"""The browser canvas: `web/dist` (built by `make`, see docs/web.md) served at `/`.

`index.html` is revalidated on every load; the files under `assets/` carry a content hash in their
names, so browsers may keep them for a year. Pre-compressed `.gz` siblings are sent when accepted.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

DIST = Path(__file__).resolve().parents[2] / "web" / "dist"
ASSET_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
NOT_BUILT = (
    "<!doctype html><title>Loom</title><p>The canvas has not been built: run <code>make run</code> "
    "(or <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>).</p>"
)


def setup(app: web.Application, dist: Path = DIST) -> None:
    """Add `GET /` and `GET /assets/{name}`; call after the API routes."""

    async def index(request: web.Request) -> web.StreamResponse:
        page = dist / "index.html"
        if not page.is_file():
            return web.Response(text=NOT_BUILT, content_type="text/html", status=503)
        return web.FileResponse(page, headers={"Cache-Control": "no-cache"})

    async def asset(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = dist / "assets" / name
        if not ASSET_NAME.match(name) or name.startswith(".") or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path, headers={"Cache-Control": "public, max-age=31536000, immutable"})

    app.router.add_get("/", index)
    app.router.add_get("/assets/{name}", asset)
