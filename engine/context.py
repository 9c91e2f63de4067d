"""The narrow context a node sees: progress, interrupt, previews, folders, its prompt. Nothing more."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from engine import folders as folder_config
from engine.folders import Folders

EventListener = Callable[[str, dict[str, Any]], None]


class Interrupted(Exception):
    """Raised inside a prompt when the user interrupts it; carries the node id it stopped at."""


# A node that never checks for interrupt (a runaway loop) gets Interrupted raised inside it this long
# after the request, by whoever runs prompts (the server's worker, a scale-out device).
FORCE_INTERRUPT_S = 2.0


def raise_in_thread(thread_id: int, exception: type[BaseException] | None) -> None:
    """CPython's PyThreadState_SetAsyncExc: raise `exception` in that thread (None clears it)."""
    import ctypes

    ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(thread_id), ctypes.py_object(exception) if exception else None
    )


@dataclass
class Context:
    node_id: str
    prompt_id: str
    emit: EventListener
    interrupt_flag: threading.Event
    prompt: dict[str, Any] = field(default_factory=dict)
    extra_pnginfo: dict[str, Any] = field(default_factory=dict)
    # Nodes created by expansion report progress as the node the user sees on the canvas.
    display_node: str | None = None
    # Whether samplers should draw latent previews (the prompt's or the server's preview method).
    previews: bool = True
    # How they are drawn: "latent2rgb" or "taesd" (which falls back to latent2rgb without its file).
    preview_method: str = "latent2rgb"

    @property
    def folders(self) -> Folders:
        return folder_config.current()

    def check_interrupt(self) -> None:
        if self.interrupt_flag.is_set():
            raise Interrupted(self.node_id)

    def progress(self, value: int, total: int) -> None:
        """Report progress (and let an interrupt stop the node here)."""
        self.check_interrupt()
        self.emit(
            "progress",
            {
                "value": value,
                "max": total,
                "prompt_id": self.prompt_id,
                "node": self.display_node or self.node_id,
            },
        )

    def preview(self, image_format: str, data: bytes) -> None:
        """Send an encoded preview image (PNG or JPEG) to the client watching this prompt."""
        self.emit(
            "preview_image",
            {
                "format": image_format,
                "image": data,
                "prompt_id": self.prompt_id,
                "node": self.display_node or self.node_id,
            },
        )


# The context of the node running in this thread or task: how helpers that take no context argument
# (ComfyUI's ProgressBar, throw_exception_if_processing_interrupted) find the running node.
current_context: ContextVar[Context | None] = ContextVar("loom_current_context", default=None)


def check_interrupt() -> None:
    """For helpers that are not handed a context (long tensor work in chunks): stop here if the
    running node's prompt was interrupted."""
    ctx = current_context.get()
    if ctx is not None:
        ctx.check_interrupt()
