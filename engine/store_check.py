"""Checking the queue database file before it is opened: SQLite's header, the size its header
promises, and `PRAGMA quick_check`. A file that fails is refused with a message that names it and
the way to recover; nothing is written to it."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import NoReturn

SQLITE_HEADER = b"SQLite format 3\x00"
RECOVERY = (
    "Stop Loom, move the file aside (mv {path} {path}.broken) and start again: a new, empty queue"
    " is created. To try to save its history: sqlite3 {path}.broken .recover | sqlite3 {path}"
    " (see 'Recovering the database' in docs/api.md)."
)


class StoreError(RuntimeError):
    """The database file cannot be used; the message names it and says how to recover."""


def check_database(path: Path) -> None:
    """Refuse a file that is not an SQLite database, is cut short, or fails SQLite's quick_check,
    before anything writes to it (a foreign file is left exactly as it was)."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with path.open("rb") as file:
        header = file.read(100)
    size = path.stat().st_size
    if not header.startswith(SQLITE_HEADER):
        _refuse(path, "it is not an SQLite database (wrong header)")
    if len(header) < 100:
        _refuse(path, f"it is cut short ({size} bytes, less than an SQLite header)")
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    if header[24:28] == header[92:96] and size < page_size * pages:
        _refuse(path, f"it is cut short ({size} bytes; its header says {page_size * pages})")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
            problems = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        _refuse(path, f"SQLite cannot read it ({exc})")
    if problems != ["ok"]:
        _refuse(path, "it is damaged: " + "; ".join(problems)[:500])


def _refuse(path: Path, why: str) -> NoReturn:
    raise StoreError(f"The queue database {path} cannot be used: {why}. " + RECOVERY.format(path=path))
