"""ComfyUI's comfy.comfy_types: type names and typing helpers for node classes."""

from comfy.comfy_types.node_typing import IO, CheckLazyMixin, ComfyNodeABC, InputTypeDict

__all__ = ["IO", "CheckLazyMixin", "ComfyNodeABC", "InputTypeDict"]
