"""The official front end's routes on Loom and on a real ComfyUI, side by side: status and shape.

Start ComfyUI first with an empty user folder (see ../shared/tools/comfyui/README.md), e.g.
    cd /tmp/comfy/ComfyUI && ../venv/bin/python main.py --cpu --listen 127.0.0.1 --port 8314 \
        --user-directory "$(mktemp -d)"
then `python bench/frontend_routes.py --comfy http://127.0.0.1:8314` starts Loom itself (in a temp
folder, port 8214 by default) and prints one row per request. Shapes are compared, not values
(model lists and paths differ): a JSON value's type, an object's keys, a list's first item's shape;
for an error only the status (Loom's error bodies are JSON `{"error": ...}`, ComfyUI's text).
Routes ComfyUI 0.3.64 does not have yet (jobs, global subgraphs, node replacements) show its 404.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUESTS: list[tuple[str, str, bytes | None]] = [
    ("GET", "/api/users", None),
    ("GET", "/api/settings", None),
    ("POST", "/api/settings/Bench.Value", b'"x"'),
    ("GET", "/api/settings/Bench.Value", None),
    ("GET", "/api/settings/Bench.Missing", None),
    ("GET", "/api/userdata?dir=bench", None),
    ("POST", "/api/userdata/bench%2Fa.json?overwrite=false&full_info=true", b"{}"),
    ("POST", "/api/userdata/bench%2Fa.json?overwrite=false", b"{}"),
    ("GET", "/api/userdata?dir=bench&full_info=true", None),
    ("GET", "/api/userdata?dir=bench&split=true", None),
    ("GET", "/api/userdata/bench%2Fa.json", None),
    ("POST", "/api/userdata/bench%2Fa.json/move/bench%2Fb.json", None),
    ("GET", "/api/v2/userdata?path=bench", None),
    ("DELETE", "/api/userdata/bench%2Fb.json", None),
    ("GET", "/api/userdata/..%2F..%2Fsecret", None),
    ("GET", "/api/i18n", None),
    ("GET", "/api/workflow_templates", None),
    ("GET", "/api/experiment/models", None),
    ("GET", "/api/experiment/models/checkpoints", None),
    ("GET", "/api/experiment/models/nonsense", None),
    ("GET", "/internal/folder_paths", None),
    ("GET", "/internal/logs", None),
    ("GET", "/internal/logs/raw", None),
    ("PATCH", "/internal/logs/subscribe", b'{"clientId": "bench", "enabled": false}'),
    ("GET", "/internal/files/output", None),
    ("GET", "/internal/files/elsewhere", None),
    ("GET", "/api/view_metadata/checkpoints?filename=missing.safetensors", None),
    ("GET", "/api/jobs?status=completed,failed,cancelled", None),
    ("GET", "/api/global_subgraphs", None),
    ("GET", "/api/node_replacements", None),
]


def call(base: str, method: str, path: str, body: bytes | None) -> tuple[int, Any]:
    request = urllib.request.Request(base + path, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, "<text>"


def shape(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ",".join(sorted(value)[:8]) + ("…" if len(value) > 8 else "") + "}"
    if isinstance(value, list):
        return "[" + (shape(value[0]) if value else "") + "]"
    return type(value).__name__


def start_loom(port: int) -> subprocess.Popen[str]:
    folder = Path(tempfile.mkdtemp(prefix="loom-bench-"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, str(ROOT / "main.py"), "--port", str(port), "--front-end", "comfy", "--quiet"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening" in line:
            return process
    raise RuntimeError("Loom did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfy", default="http://127.0.0.1:8314", help="a running ComfyUI")
    parser.add_argument("--port", type=int, default=8214, help="port for Loom")
    args = parser.parse_args()
    started = time.perf_counter()
    loom_process = start_loom(args.port)
    loom = f"http://127.0.0.1:{args.port}"
    same = 0
    try:
        print("| request | ComfyUI | Loom |\n|---|---|---|")
        for method, path, body in REQUESTS:
            theirs, ours = call(args.comfy, method, path, body), call(loom, method, path, body)
            # Error bodies differ by design (Loom answers {"error": ...} JSON): compare their status.
            match = theirs[0] == ours[0] and (ours[0] >= 400 or shape(theirs[1]) == shape(ours[1]))
            same += match
            mark = "" if match else " ≠"
            print(f"| {method} {path} | {theirs[0]} {shape(theirs[1])} | {ours[0]} {shape(ours[1])}{mark} |")
    finally:
        loom_process.terminate()
        loom_process.wait(30)
    print(f"\n{same}/{len(REQUESTS)} requests answered alike ({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
