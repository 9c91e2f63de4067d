"""ComfyUI's `comfy_api.latest`: `ComfyExtension`, the `io` and `ui` modules, and `ComfyAPI` (progress
reporting from inside a node, async and sync)."""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from enum import Enum
from typing import Any

import torch

from comfy_api.latest import _io as io
from comfy_api.latest import _ui as ui
from engine.context import current_context
from engine.settle import settled

comfy_io = io


class ComfyExtension(ABC):
    """What a pack's `comfy_entrypoint()` returns: Loom awaits `on_load()`, then registers the node
    classes `get_node_list()` gives."""

    async def on_load(self) -> None:  # noqa: B027 - optional hook, empty by default
        """Set up what the pack's nodes need (called once, before get_node_list)."""

    @abstractmethod
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        """The V3 node classes this pack provides."""


class _Execution:
    async def set_progress(
        self, value: float, max_value: float, node_id: str | None = None, preview_image: Any = None,
        ignore_size_limit: bool = False,
    ) -> None:  # fmt: skip
        """Report the running node's progress (and optionally a preview image) to the client."""
        ctx = current_context.get()
        if ctx is None:
            if node_id is None:
                raise ValueError("node_id must be given when called outside a running node")
            return
        ctx.progress(value, max_value)  # type: ignore[arg-type]
        if preview_image is not None:
            _send_preview(ctx, preview_image)


def _send_preview(ctx: Any, image: Any) -> None:
    import io as bytes_io

    import numpy as np
    from PIL import Image as PILImage

    if isinstance(image, torch.Tensor):
        array = image[0] if image.ndim == 4 else image
        image = PILImage.fromarray(np.clip(array.cpu().numpy() * 255, 0, 255).astype(np.uint8))
    buffer = bytes_io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    ctx.preview("JPEG", buffer.getvalue())


class ComfyAPI_latest:
    VERSION = "latest"
    STABLE = False
    Execution = _Execution

    def __init__(self) -> None:
        self.execution = _Execution()


def create_sync_class(async_class: type) -> type:
    """The same API with blocking methods: each coroutine runs to completion where it is called (a
    helper thread drives it when the caller is already inside an event loop)."""

    def blocking(method: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            return settled(method(*args, **kwargs))

        return call

    class SyncNamespace:
        def __init__(self, inner: Any) -> None:
            for name, member in inspect.getmembers(inner, inspect.ismethod):
                if not name.startswith("_"):
                    setattr(self, name, blocking(member))

    class SyncAPI:
        VERSION = getattr(async_class, "VERSION", "latest")

        def __init__(self) -> None:
            inner = async_class()
            for name, value in vars(inner).items():
                setattr(self, name, SyncNamespace(value))

    SyncAPI.__name__ = f"{async_class.__name__}Sync"
    return SyncAPI


ComfyAPI = ComfyAPI_latest
ComfyAPISync = create_sync_class(ComfyAPI_latest)


class Input:
    Image = torch.Tensor
    Mask = torch.Tensor
    Latent = dict
    Audio = dict
    Video = Any


class InputImpl:
    pass


class VideoCodec(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    """Video codecs a save node offers (ComfyUI's names)."""

    AUTO = "auto"
    H264 = "h264"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]


class VideoContainer(str, Enum):  # noqa: UP042 - ComfyUI's str-valued enums
    """Video containers a save node offers, and their file extensions."""

    AUTO = "auto"
    MP4 = "mp4"

    @classmethod
    def as_input(cls) -> list[str]:
        return [member.value for member in cls]

    @classmethod
    def get_extension(cls, value: str | VideoContainer) -> str:
        return "mp4" if cls(value) in (cls.AUTO, cls.MP4) else ""


class Types:
    """ComfyUI's helper value types packs name in schemas (`Types.VideoContainer.as_input()`)."""

    VideoCodec = VideoCodec
    VideoContainer = VideoContainer


__all__ = [
    "ComfyAPI",
    "ComfyAPISync",
    "ComfyExtension",
    "Input",
    "InputImpl",
    "Types",
    "comfy_io",
    "io",
    "ui",
]
