"""The server's console: log lines as ComfyUI prints them, and the recent ones for the front end.

`setup_console(level)` sends Python logging to stderr as bare messages (ComfyUI's format) at the
given level (`--verbose`, `--quiet`), and keeps the last `capacity` lines in memory for
`/internal/logs` and the front end's terminal panel, which subscribes to new lines over the
websocket (`PATCH /internal/logs/subscribe`). Only logging is captured, not bare `print`s.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import Any

Entry = dict[str, str]
Listener = Callable[[list[Entry]], None]


class LogBuffer(logging.Handler):
    """Recent log lines as ComfyUI's {"t": ISO time, "m": message with newline} entries."""

    def __init__(self, capacity: int = 300) -> None:
        super().__init__()
        self.entries: deque[Entry] = deque(maxlen=capacity)
        self.listeners: list[Listener] = []
        self._guard = threading.Lock()
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            entry = {"t": datetime.now().isoformat(), "m": self.format(record) + "\n"}
        except Exception:  # a bad format argument in someone's log call must not break logging
            self.handleError(record)
            return
        with self._guard:
            self.entries.append(entry)
            listeners = list(self.listeners)
        for listener in listeners:
            # RuntimeError: the server's loop is closing, and nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                listener([entry])

    def text(self) -> str:
        with self._guard:
            return "".join(f"{e['t']} - {e['m']}" for e in self.entries)

    def snapshot(self) -> list[Entry]:
        with self._guard:
            return list(self.entries)


LOGS = LogBuffer()
_configured = False


def setup_console(level: str | int = "INFO") -> None:
    """Bare messages on stderr at `level`, and every INFO-or-above line kept in LOGS."""
    global _configured
    root = logging.getLogger()
    if not _configured:
        console = logging.StreamHandler(sys.stderr)
        console.setFormatter(logging.Formatter("%(message)s"))
        console.set_name("loom-console")
        root.addHandler(console)
        root.addHandler(LOGS)
        _configured = True
    numeric = logging.getLevelName(level) if isinstance(level, str) else level
    for handler in root.handlers:
        if handler.get_name() == "loom-console":
            handler.setLevel(numeric)
    LOGS.setLevel(min(numeric, logging.INFO))
    root.setLevel(min(numeric, logging.INFO))
    # aiohttp's access log and asyncio's debug chatter are not what a user wants to read.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def terminal_size() -> dict[str, Any]:
    import shutil

    size = shutil.get_terminal_size((80, 24))
    return {"cols": size.columns, "rows": size.lines}
