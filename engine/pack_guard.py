"""Importing a custom node pack without letting it stop or hang the server.

- A time limit: past it, the import is stopped (SIGALRM in the main thread interrupts sleeps and
  Python loops; elsewhere the exception is raised asynchronously in the importing thread). A pack
  stuck in C code cannot be stopped, but the log names it as soon as its time is up.
- `sys.exit`, `os._exit` and `KeyboardInterrupt` during the import become an error for that pack.
- A pack that kills the process outright (a segfault) leaves a marker behind; the next start skips
  that pack until its files change, and reports why.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

# Seconds a pack may take to import and describe its nodes (LOOM_PACK_IMPORT_TIMEOUT overrides).
IMPORT_LIMIT_S = float(os.environ.get("LOOM_PACK_IMPORT_TIMEOUT", "60"))
MARKER = "pack-import-in-progress.json"
QUARANTINE = "pack-quarantine.json"


class PackImportError(Exception):
    """A pack exited, was interrupted or ran out of time while it was imported."""


class PackTimeout(BaseException):
    """Raised inside a pack's import when its time is up (BaseException, so `except Exception` in
    the pack cannot swallow it)."""


def import_guarded(name: str, work: Callable[[], T], limit: float | None = None) -> T:
    """Run `work` (a pack's import and registration) under the time limit, exits refused."""
    limit = IMPORT_LIMIT_S if limit is None else limit
    real_exit = os._exit

    def refuse_exit(code: int) -> NoReturn:
        raise PackImportError(f"called os._exit({code}) while being imported")

    os._exit = refuse_exit  # type: ignore[assignment]
    try:
        with _deadline(name, limit):
            return work()
    except PackTimeout:
        raise PackImportError(f"did not finish importing within {limit:g} s; skipped") from None
    except (SystemExit, KeyboardInterrupt) as exc:
        raise PackImportError(f"raised {type(exc).__name__}({exc}) while being imported") from None
    finally:
        os._exit = real_exit


@contextlib.contextmanager
def _deadline(name: str, limit: float) -> Iterator[None]:
    def announce() -> None:
        log.error("Custom node pack %s is still importing after %g s; stopping it", name, limit)

    if threading.current_thread() is threading.main_thread():

        def on_alarm(signum: int, frame: Any) -> None:
            announce()
            raise PackTimeout

        previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, limit)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)
        return
    thread_id, done = threading.get_ident(), threading.Event()

    def watchdog() -> None:
        if not done.wait(limit):
            announce()
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(thread_id), ctypes.py_object(PackTimeout)
            )

    threading.Thread(target=watchdog, name=f"loom-pack-deadline-{name}", daemon=True).start()
    try:
        yield
    finally:
        done.set()


def _fingerprint(path: Path) -> float:
    init = path / "__init__.py" if path.is_dir() else path
    return init.stat().st_mtime if init.exists() else 0.0


def quarantined(state_dir: Path | None, path: Path) -> str | None:
    """Why this pack is skipped, if an earlier start died while importing it (and it has not changed
    since); the marker of that start is moved into the quarantine list here."""
    if state_dir is None:
        return None
    marker, listing = state_dir / MARKER, state_dir / QUARANTINE
    entries: dict[str, float] = _read(listing)
    crashed = _read(marker).get("path")
    if isinstance(crashed, str):
        entries[crashed] = _fingerprint(Path(crashed))
        listing.write_text(json.dumps(entries))
        marker.unlink(missing_ok=True)
    if str(path) not in entries:
        return None
    if entries[str(path)] != _fingerprint(path):
        del entries[str(path)]
        listing.write_text(json.dumps(entries))
        return None
    return (
        "the server process died while importing this pack at an earlier start (a crash or os._exit"
        f" from native code); it is skipped until its files change (or remove it from {listing})"
    )


@contextlib.contextmanager
def crash_marker(state_dir: Path | None, path: Path) -> Iterator[None]:
    """Note which pack is importing, so a start that dies here knows whom to blame next time."""
    if state_dir is None:
        yield
        return
    marker = state_dir / MARKER
    state_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps({"path": str(path)}))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def _read(file: Path) -> dict[str, Any]:
    try:
        value = json.loads(file.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
