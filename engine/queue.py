"""The durable prompt queue and history, in SQLite.

One table holds every accepted prompt through its life: pending → running → done. A prompt that
was running when the process died is pending again at the next start and runs first; pending
prompts keep their order; done prompts carry their history entry in ComfyUI's shape. WAL mode
with synchronous=NORMAL survives a killed process without an fsync per commit, so a submit costs
well under a millisecond.

The connection is shared by the event loop (submits, reads) and the worker thread (claims,
results); a lock serialises them, and every call is one short transaction.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.store_check import check_database

State = Literal["pending", "running", "done"]
JobSort = Literal["created_at", "execution_duration"]

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE prompts (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            prompt_id TEXT NOT NULL UNIQUE,
            number REAL NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('pending', 'running', 'done')),
            prompt TEXT NOT NULL,
            extra_data TEXT NOT NULL,
            outputs TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            started_at INTEGER,
            finished_at INTEGER,
            status_str TEXT,
            history TEXT,
            done_seq INTEGER
        );
        CREATE INDEX prompts_queue ON prompts (state, number, seq);
        CREATE INDEX prompts_done ON prompts (done_seq) WHERE state = 'done';
        """,
    ),
    (
        2,
        """
        ALTER TABLE prompts ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE prompts ADD COLUMN running_node TEXT
        """,
    ),
)

# A prompt is started at most this many times by processes that then died (exit, crash, kill, hang
# ended by a restart); after that it is recorded as failed instead of taking the server down again.
MAX_ATTEMPTS = 2


# A prompt that had started (the process died or stopped under it) keeps started_at and goes first.
RUN_ORDER = "started_at IS NULL, number, seq"


class DuplicatePromptError(ValueError):
    """A prompt_id that is already pending or running."""


@dataclass
class QueueItem:
    """One queued prompt; `as_list()` is ComfyUI's queue tuple (number, id, prompt, extra_data, outputs)."""

    number: float
    prompt_id: str
    prompt: dict[str, Any]
    extra_data: dict[str, Any]
    outputs: list[str]

    def as_list(self) -> list[Any]:
        return [_number(self.number), self.prompt_id, self.prompt, self.extra_data, self.outputs]


@dataclass
class JobRow:
    """A prompt in any state, with what the jobs API reports about it."""

    item: QueueItem
    state: State
    created_at: int
    started_at: int | None
    finished_at: int | None
    status_str: str | None
    history: dict[str, Any] | None


def _now_ms() -> int:
    return int(time.time() * 1000)


def _number(value: float) -> float | int:
    """ComfyUI reports counter numbers as ints; explicit numbers may be fractional."""
    return int(value) if float(value).is_integer() else value


class PromptStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        check_database(path)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._migrate()
        self.crashed: list[str] = self._recover()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
                self._db.execute("COMMIT")
            except BaseException:
                # A COMMIT that failed (disk full) leaves the transaction open; without this
                # rollback every later write would fail with "cannot start a transaction".
                if self._db.in_transaction:
                    with suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
                raise

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            cursor = self._db.execute(sql, tuple(params))
            cursor.row_factory = sqlite3.Row
            return cursor.fetchall()

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, applied_at INTEGER)"
            )
            applied = {row[0] for row in db.execute("SELECT version FROM migrations")}
            for version, script in MIGRATIONS:
                if version not in applied:
                    for statement in filter(str.strip, script.split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO migrations VALUES (?, ?)", (version, _now_ms()))

    def _recover(self) -> list[str]:
        """Prompts that were running when the process ended run again, unless they already had their
        retry: those are recorded as failed, so a prompt that kills the process cannot crash-loop it."""
        with self._write() as db:
            dead = db.execute(
                "SELECT prompt_id, attempts, running_node, prompt FROM prompts"
                " WHERE state = 'running' AND attempts >= ?",
                (MAX_ATTEMPTS,),
            ).fetchall()
            for prompt_id, attempts, node, prompt in dead:
                history = _crash_history(prompt_id, attempts, node, json.loads(prompt))
                db.execute(
                    "UPDATE prompts SET state = 'done', finished_at = ?, status_str = 'error', history = ?,"
                    " done_seq = (SELECT COALESCE(MAX(done_seq), 0) + 1 FROM prompts) WHERE prompt_id = ?",
                    (_now_ms(), json.dumps(history), prompt_id),
                )
            db.execute("UPDATE prompts SET state = 'pending' WHERE state = 'running'")
        return [row[0] for row in dead]

    def schema_version(self) -> int:
        return int(self._read("SELECT MAX(version) FROM migrations")[0][0])

    # The queue

    def add(
        self,
        prompt_id: str,
        prompt: dict[str, Any],
        extra_data: dict[str, Any],
        outputs: list[str],
        number: float | None = None,
        front: bool = False,
    ) -> float | int:
        """Queue a prompt; without an explicit number it gets the next counter value (negated for
        `front`, as ComfyUI does), so lower numbers run first and ties run in submission order."""
        with self._write() as db:
            existing = db.execute("SELECT state FROM prompts WHERE prompt_id = ?", (prompt_id,)).fetchone()
            if existing and existing[0] != "done":
                raise DuplicatePromptError(f"prompt_id {prompt_id!r} is already {existing[0]}")
            if existing:
                db.execute("DELETE FROM prompts WHERE prompt_id = ?", (prompt_id,))
            if number is None:
                row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'prompts'").fetchone()
                number = -float(row[0] if row else 0) if front else float(row[0] if row else 0)
            db.execute(
                "INSERT INTO prompts (prompt_id, number, state, prompt, extra_data, outputs, created_at)"
                " VALUES (?, ?, 'pending', ?, ?, ?, ?)",
                (
                    prompt_id,
                    number,
                    json.dumps(prompt),
                    json.dumps(extra_data),
                    json.dumps(outputs),
                    extra_data.get("create_time", _now_ms()),
                ),
            )
        return _number(number)

    def claim_next(self) -> QueueItem | None:
        """The first pending prompt, now marked running."""
        with self._write() as db:
            cursor = db.execute(
                "SELECT number, prompt_id, prompt, extra_data, outputs FROM prompts"
                f" WHERE state = 'pending' ORDER BY {RUN_ORDER} LIMIT 1"
            )
            row = cursor.fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE prompts SET state = 'running', started_at = ?, attempts = attempts + 1,"
                " running_node = NULL WHERE prompt_id = ?",
                (_now_ms(), row[1]),
            )
        return _item(row)

    def pending(self, limit: int) -> list[QueueItem]:
        """The first `limit` pending prompts, in the order they would run (for a dispatcher that
        chooses among them: scale-out routing)."""
        rows = self._read(
            "SELECT number, prompt_id, prompt, extra_data, outputs FROM prompts"
            f" WHERE state = 'pending' ORDER BY {RUN_ORDER} LIMIT ?",
            (limit,),
        )
        return [_item(r) for r in rows]

    def claim(self, prompt_id: str) -> int | None:
        """Mark one pending prompt running; its attempt number, or None if it is no longer pending."""
        with self._write() as db:
            claimed = db.execute(
                "UPDATE prompts SET state = 'running', started_at = ?, attempts = attempts + 1,"
                " running_node = NULL WHERE prompt_id = ? AND state = 'pending' RETURNING attempts",
                (_now_ms(), prompt_id),
            ).fetchone()
        return int(claimed[0]) if claimed else None

    def retry(self, prompt_id: str) -> None:
        """Put a running prompt back whose worker died: unlike `requeue`, the start counts."""
        with self._write() as db:
            db.execute(
                "UPDATE prompts SET state = 'pending' WHERE prompt_id = ? AND state = 'running'", (prompt_id,)
            )

    def finish(self, prompt_id: str, history: dict[str, Any], outcome: str | None = None) -> None:
        """Record a prompt's history entry ({outputs, status, meta}) and mark it done; `outcome`
        (default: the entry's status_str) is what /jobs filters on, "cancelled" for an interrupt."""
        with self._write() as db:
            db.execute(
                "UPDATE prompts SET state = 'done', finished_at = ?, status_str = ?, history = ?,"
                " done_seq = (SELECT COALESCE(MAX(done_seq), 0) + 1 FROM prompts) WHERE prompt_id = ?",
                (_now_ms(), outcome or history["status"]["status_str"], json.dumps(history), prompt_id),
            )

    def requeue(self, prompt_id: str) -> None:
        """Put a running prompt back (the server is stopping and it will run at the next start); it
        stopped when asked, so this start does not count against its retry."""
        with self._write() as db:
            db.execute(
                "UPDATE prompts SET state = 'pending', attempts = MAX(attempts - 1, 0)"
                " WHERE prompt_id = ? AND state = 'running'",
                (prompt_id,),
            )

    def mark_node(self, prompt_id: str, node_id: str | None) -> None:
        """Remember which node runs now, so a prompt that kills the process is reported with it."""
        with self._write() as db:
            db.execute("UPDATE prompts SET running_node = ? WHERE prompt_id = ?", (node_id, prompt_id))

    def queue(self) -> tuple[list[QueueItem], list[QueueItem]]:
        """(running, pending), pending in the order they will run."""
        rows = self._read(
            "SELECT number, prompt_id, prompt, extra_data, outputs, state FROM prompts"
            f" WHERE state IN ('pending', 'running') ORDER BY {RUN_ORDER}"
        )
        running = [_item(r) for r in rows if r["state"] == "running"]
        return running, [_item(r) for r in rows if r["state"] == "pending"]

    def state(self, prompt_id: str) -> State | None:
        rows = self._read("SELECT state FROM prompts WHERE prompt_id = ?", (prompt_id,))
        return rows[0]["state"] if rows else None

    def remaining(self) -> int:
        return int(self._read("SELECT COUNT(*) FROM prompts WHERE state IN ('pending', 'running')")[0][0])

    def delete_pending(self, prompt_ids: Iterable[str]) -> int:
        ids = list(prompt_ids)
        with self._write() as db:
            return db.executemany(
                "DELETE FROM prompts WHERE prompt_id = ? AND state = 'pending'", [(i,) for i in ids]
            ).rowcount

    def clear_pending(self) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM prompts WHERE state = 'pending'").rowcount

    # History

    def history(self, max_items: int | None = None, offset: int = -1) -> dict[str, dict[str, Any]]:
        """Entries oldest first; ComfyUI's paging: without an offset, the newest `max_items`."""
        if offset < 0 and max_items is not None:
            total = int(self._read("SELECT COUNT(*) FROM prompts WHERE state = 'done'")[0][0])
            offset = max(total - max_items, 0)
        rows = self._read(
            "SELECT number, prompt_id, prompt, extra_data, outputs, history FROM prompts"
            " WHERE state = 'done' ORDER BY done_seq LIMIT ? OFFSET ?",
            (-1 if max_items is None else max_items, max(offset, 0)),
        )
        return {row["prompt_id"]: _history_entry(row) for row in rows}

    def history_entry(self, prompt_id: str) -> dict[str, Any] | None:
        rows = self._read(
            "SELECT number, prompt_id, prompt, extra_data, outputs, history FROM prompts"
            " WHERE state = 'done' AND prompt_id = ?",
            (prompt_id,),
        )
        return _history_entry(rows[0]) if rows else None

    def delete_history(self, prompt_ids: Iterable[str]) -> int:
        ids = [(i,) for i in prompt_ids]
        with self._write() as db:
            return db.executemany("DELETE FROM prompts WHERE prompt_id = ? AND state = 'done'", ids).rowcount

    def clear_history(self) -> int:
        with self._write() as db:
            return db.execute("DELETE FROM prompts WHERE state = 'done'").rowcount

    def reclaim(self, min_free_fraction: float = 0.25) -> bool:
        """Give the space of deleted entries back to the file system once a quarter of the file is
        free pages (VACUUM, then a WAL checkpoint so the main file really shrinks)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
            if not pages or free / pages < min_free_fraction:
                return False
            self._db.execute("VACUUM")
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return True

    # Jobs: every state at once, filtered, sorted and paged in SQL

    def jobs(
        self,
        states: Iterable[tuple[State, str | None]],
        sort_by: JobSort = "created_at",
        descending: bool = True,
        limit: int | None = None,
        offset: int = 0,
        prompt_id: str | None = None,
        workflow_id: str | None = None,
    ) -> tuple[list[JobRow], int]:
        """Rows whose (state, status_str) matches one of `states` (None matches any status)."""
        clauses = []
        params: list[Any] = []
        for state, status in states:
            clauses.append("(state = ?" + (" AND status_str = ?)" if status else ")"))
            params += [state, status] if status else [state]
        where = f"({' OR '.join(clauses) or '0'})"
        if prompt_id is not None:
            where += " AND prompt_id = ?"
            params.append(prompt_id)
        if workflow_id is not None:
            where += " AND json_extract(extra_data, '$.extra_pnginfo.workflow.id') = ?"
            params.append(workflow_id)
        total = int(self._read(f"SELECT COUNT(*) FROM prompts WHERE {where}", params)[0][0])
        key = "COALESCE(finished_at - started_at, 0)" if sort_by == "execution_duration" else "created_at"
        direction = "DESC" if descending else "ASC"
        rows = self._read(
            f"SELECT * FROM prompts WHERE {where}"
            f" ORDER BY {key} {direction}, seq {direction} LIMIT ? OFFSET ?",
            [*params, -1 if limit is None else limit, offset],
        )
        return [_job_row(r) for r in rows], total


def _crash_history(prompt_id: str, attempts: int, node: str | None, prompt: dict[str, Any]) -> dict[str, Any]:
    where = f" while node #{node} ({prompt.get(node, {}).get('class_type')}) ran" if node else ""
    message = (
        f"The server process ended{where} on each of this prompt's {attempts} attempts (the node exited,"
        " crashed or hung until the server was stopped); it is not run again."
    )
    error: dict[str, Any] = {
        "prompt_id": prompt_id,
        "node_id": node,
        "node_type": prompt.get(node, {}).get("class_type") if node else None,
        "executed": [],
        "exception_message": message,
        "exception_type": "ProcessDied",
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": _now_ms(),
    }
    status = {"status_str": "error", "completed": False, "messages": [["execution_error", error]]}
    return {"outputs": {}, "status": status, "meta": {}}


def _item(row: Any) -> QueueItem:
    return QueueItem(row[0], row[1], json.loads(row[2]), json.loads(row[3]), json.loads(row[4]))


def _history_entry(row: sqlite3.Row) -> dict[str, Any]:
    return {"prompt": _item(row).as_list(), **json.loads(row["history"])}


def _job_row(row: sqlite3.Row) -> JobRow:
    item = QueueItem(
        row["number"],
        row["prompt_id"],
        json.loads(row["prompt"]),
        json.loads(row["extra_data"]),
        json.loads(row["outputs"]),
    )
    history = json.loads(row["history"]) if row["history"] else None
    return JobRow(
        item,
        row["state"],
        row["created_at"],
        row["started_at"],
        row["finished_at"],
        row["status_str"],
        history,
    )
