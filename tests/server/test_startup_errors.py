"""Start-up mistakes end with one clear line and exit code 2, never a traceback or an open server."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from engine.folders import Folders
from engine.server.config import ServerConfig
from tests.server.conftest import ROOT, free_port


def main_py(base: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "main.py"), "--disable-all-custom-nodes", *flags]
    return subprocess.run(command, cwd=base, env=env, capture_output=True, text=True, timeout=60)


def test_an_empty_token_beyond_loopback_is_refused(tmp_path: Path) -> None:
    result = main_py(tmp_path, "--listen", "0.0.0.0", "--port", str(free_port()), "--token", "")
    assert result.returncode == 2
    assert "--token is empty" in result.stderr and "Traceback" not in result.stderr


def test_an_empty_token_on_loopback_means_no_token(tmp_path: Path) -> None:
    config = ServerConfig(Folders.under(tmp_path), tmp_path / "q.db", token="")
    assert config.require_token() is None


def test_a_port_in_use_is_one_clear_line(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = main_py(tmp_path, "--listen", "127.0.0.1", "--port", str(port))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"cannot listen on 127.0.0.1 port {port}" in result.stderr


def test_a_wildcard_covers_the_specific_addresses_of_its_family(tmp_path: Path) -> None:
    def hosts(listen: str) -> list[str]:
        return ServerConfig(Folders.under(tmp_path), tmp_path / "q.db", listen=listen).listen_hosts()

    assert hosts("127.0.0.1,0.0.0.0") == ["0.0.0.0"]
    assert hosts("0.0.0.0,::") == ["0.0.0.0", "::"]
    assert hosts("127.0.0.1,::1") == ["127.0.0.1", "::1"]
    assert hosts("::1,::,127.0.0.1") == ["::", "127.0.0.1"]
