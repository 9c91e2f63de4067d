"""Test nodes for the Ray workers: one that notes every run of itself in a file and can kill its
worker's process, so a test can count how often a prompt ran and where."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from engine.native import Input, Node


class RunLog(Node):
    """Appends this process's id to `log`; then, as `die` asks, ends the process (`first`: only on the
    first run logged there, `always`: every time) or returns `value`."""

    category = "test"
    not_idempotent = True

    def run(
        self,
        log: Annotated[str, Input("File that gets one line per run.")],
        die: Annotated[str, Input("never, first or always.")] = "never",
        value: float = 1.0,
    ) -> float:
        path = Path(log)
        earlier = path.read_text().count("\n") if path.exists() else 0
        with path.open("a") as file:
            file.write(f"{os.getpid()}\n")
        if die == "always" or (die == "first" and earlier == 0):
            os._exit(3)
        return value
