"""ComfyUI's `server` module as packs see it: only `PromptServer.instance`."""

from engine.comfy_compat.prompt_server import PromptServer

__all__ = ["PromptServer"]
