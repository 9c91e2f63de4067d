"""Packs that exit, are interrupted, hang or crash at import: the server starts anyway, within the
time limit, and names each one in its log and in /custom_nodes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.server.conftest import ROOT, connect, start_server

LOOPING_INPUT_TYPES = """
class Spins:
    @classmethod
    def INPUT_TYPES(cls):
        while True:
            pass
    RETURN_TYPES = ("INT",)
    FUNCTION = "go"
    def go(self):
        return (1,)

NODE_CLASS_MAPPINGS = {"Spins": Spins}
"""
BAD_PACKS = {
    "calls_os_exit.py": "import os\nos._exit(3)\n",
    "calls_sys_exit.py": "import sys\nsys.exit(3)\n",
    "raises_ctrl_c.py": "raise KeyboardInterrupt\n",
    "loops_at_import.py": "while True:\n    pass\n",
    "sleeps_at_import.py": "import time\ntime.sleep(3600)\n",
    "loops_in_input_types.py": LOOPING_INPUT_TYPES,
    "fine.py": "NODE_CLASS_MAPPINGS = {}\n",
}


def with_packs(base: Path, packs: dict[str, str]) -> str:
    folder = base / "packs"
    folder.mkdir()
    for name, source in packs.items():
        (folder / name).write_text(source)
    config = base / "extra_model_paths.yaml"
    config.write_text("loom:\n    base_path: .\n    custom_nodes: packs\n")
    return str(config)


async def test_packs_that_exit_or_hang_at_import_are_skipped_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOM_PACK_IMPORT_TIMEOUT", "1.5")
    started = time.monotonic()
    server = start_server(tmp_path, "--extra-model-paths-config", with_packs(tmp_path, BAD_PACKS))
    try:
        took = time.monotonic() - started
        async with connect(server) as client:
            packs = {p["name"]: p for p in await client.get("/custom_nodes")}
            assert (await client.get("/prompt"))["exec_info"]["queue_remaining"] == 0
    finally:
        server.stop()
    assert packs["fine"]["status"] == "loaded"
    for name in BAD_PACKS:
        if name != "fine.py":
            assert packs[name[:-3]]["status"] == "failed", name
    assert "os._exit(3)" in packs["calls_os_exit"]["error"]
    assert "KeyboardInterrupt" in packs["raises_ctrl_c"]["error"]
    for slow in ("loops_at_import", "sleeps_at_import", "loops_in_input_types"):
        assert "within 1.5 s" in packs[slow]["error"]
        assert f"Custom node pack {slow} is still importing after 1.5 s" in server.startup
    assert took < 30


async def test_a_pack_that_crashes_the_process_is_skipped_at_the_next_start(tmp_path: Path) -> None:
    config = with_packs(tmp_path, {"segfaults.py": "import ctypes\nctypes.string_at(0)\n"})
    args = ["-m", "tests.server.launcher", "--extra-model-paths-config", config, "--port", "8229"]
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    crashed = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert crashed.returncode != 0
    server = start_server(tmp_path, "--extra-model-paths-config", config)
    try:
        async with connect(server) as client:
            packs = {p["name"]: p for p in await client.get("/custom_nodes")}
    finally:
        server.stop()
    assert packs["segfaults"]["status"] == "failed"
    assert "died while importing this pack" in packs["segfaults"]["error"]
