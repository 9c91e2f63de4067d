"""Loom's HTTP and websocket server, a drop-in for ComfyUI's API."""

from engine.server.app import create_app, serve
from engine.server.config import ServerConfig

__all__ = ["ServerConfig", "create_app", "serve"]
