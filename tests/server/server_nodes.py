"""Test nodes for the server: one that waits for a file (so a test decides when a prompt ends), one
that sends a preview image, one that exits, crashes or hangs."""

from __future__ import annotations

import ctypes
import os
import sys
import time
from pathlib import Path
from typing import Annotated

from engine.context import Context
from engine.native import Input, Node, Ui

# The smallest valid PNG: one transparent pixel.
TINY_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6300010000000500010d0a2db40000000049454e44ae426082"
)


class WaitForFile(Node):
    """Reports progress every 20 ms until `path` exists; interruptible at each report."""

    category = "test"
    not_idempotent = True

    def run(
        self, ctx: Context, path: Annotated[str, Input("The file to wait for.")], value: float = 1.0
    ) -> float:
        step = 0
        while not Path(path).exists():
            step += 1
            ctx.progress(step, 10**6)
            time.sleep(0.02)
        return value


class SendPreview(Node):
    """Sends one PNG preview and passes its input on."""

    category = "test"

    def run(self, ctx: Context, value: float = 1.0) -> float:
        ctx.preview("PNG", TINY_PNG)
        return value


class Fault(Node):
    """Misbehaves as asked, once `path` exists (or at once if it is empty): `sys_exit`, `os_exit`,
    `segfault`, `keyboard_interrupt`, `sleep` (an hour, in C) or `busy_loop` (spins without ever
    checking for interrupt)."""

    category = "test"
    not_idempotent = True

    def run(
        self,
        how: Annotated[str, Input("What to do.")],
        path: Annotated[str, Input("Misbehave only while this file exists.")] = "",
        value: float = 1.0,
    ) -> float:
        if path and not Path(path).exists():
            return value
        if how == "sys_exit":
            sys.exit(4)
        if how == "os_exit":
            os._exit(4)
        if how == "segfault":
            ctypes.string_at(0)
        if how == "keyboard_interrupt":
            raise KeyboardInterrupt
        if how == "sleep":
            time.sleep(3600)
        if how == "busy_loop":
            spins = 0
            while True:
                spins += 1
        return value


class BigText(Node):
    """An output node whose UI output is `size` characters long (a large history entry)."""

    category = "test"
    output_node = True
    not_idempotent = True

    def run(self, size: Annotated[int, Input("Characters.", min=0, max=1 << 30)] = 1000) -> Ui:
        return Ui(text=["x" * size])


class FloodPreviews(Node):
    """Sends `count` preview frames of `size` bytes each, as fast as it can."""

    category = "test"
    not_idempotent = True

    def run(self, ctx: Context, count: int = 100, size: int = 65536, value: float = 1.0) -> float:
        frame = TINY_PNG + b"\0" * max(size - len(TINY_PNG), 0)
        for _ in range(count):
            ctx.preview("PNG", frame)
        return value
