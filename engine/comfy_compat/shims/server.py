"""ComfyUI's `server` module as packs see it: `PromptServer.instance`, `BinaryEventTypes` and aiohttp's
`web` (packs write `from server import PromptServer` and `server.web.json_response(...)`)."""

from aiohttp import web

from engine.comfy_compat.prompt_server import BinaryEventTypes, PromptServer

__all__ = ["BinaryEventTypes", "PromptServer", "web"]
