"""Typed keys for what the app shares between handlers."""

from __future__ import annotations

from aiohttp import web

from engine.executor import Executor
from engine.queue import PromptStore
from engine.registry import NodeRegistry
from engine.server.config import ServerConfig
from engine.server.hub import Hub
from engine.server.worker import Worker

CONFIG = web.AppKey("config", ServerConfig)
REGISTRY = web.AppKey("registry", NodeRegistry)
STORE = web.AppKey("store", PromptStore)
EXECUTOR = web.AppKey("executor", Executor)
HUB = web.AppKey("hub", Hub)
WORKER = web.AppKey("worker", Worker)
