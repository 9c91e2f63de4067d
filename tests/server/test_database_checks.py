"""A database file that is foreign, cut short or damaged is refused at start with a message that
names it and says how to recover; the file is left exactly as it was."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.queue import PromptStore
from tests.server.conftest import ROOT, free_port


def start(base: Path, database: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "main.py"), "--disable-all-custom-nodes"]
    command += ["--port", str(free_port()), "--database", str(database)]
    return subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=60)


def real_database(path: Path, entries: int = 300) -> None:
    store = PromptStore(path)
    for i in range(entries):
        store.add(f"p{i}", {"1": {"class_type": "X", "inputs": {"text": "t" * 500}}}, {}, ["1"])
    store.close()


def foreign(path: Path) -> None:
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + b"not a database" * 100)


def truncated(path: Path) -> None:
    real_database(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def garbage_page(path: Path) -> None:
    real_database(path)
    with path.open("r+b") as file:
        file.seek(4096 * 5)
        file.write(os.urandom(4096))


@pytest.mark.parametrize("spoil", [foreign, truncated, garbage_page])
def test_a_bad_database_is_refused_with_its_name_and_a_remedy(tmp_path: Path, spoil: object) -> None:
    database = tmp_path / "queue.db"
    spoil(database)  # type: ignore[operator]
    before = database.read_bytes()
    result = start(tmp_path, database)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert str(database) in result.stderr and ".recover" in result.stderr
    assert database.read_bytes() == before
    assert not Path(f"{database}-wal").exists() or spoil is not foreign
