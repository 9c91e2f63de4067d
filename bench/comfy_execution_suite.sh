#!/usr/bin/env bash
# ComfyUI's own execution test suite (tests/execution, 185 tests) run against Loom's server.
#
# The suite starts `python main.py <ComfyUI's flags>` from its working directory and talks to it over
# HTTP and the websocket. This script copies the suite out of a ComfyUI checkout into a temporary
# folder (never into this repository: it is GPL), puts a main.py there that execs Loom's main.py with
# the same arguments, and runs the suite with the ComfyUI venv's python as the client side.
#
#   bench/comfy_execution_suite.sh [pytest args...]      e.g. -k test_lazy -x
# Environment: COMFY_SRC (default /tmp/comfy/ComfyUI), COMFY_VENV (default /tmp/comfy/venv),
# LOOM_PYTHON (default /work/main/.venv/bin/python), PORT (default 8212), KEEP=1 keeps the folder.
set -euo pipefail

LOOM=$(cd "$(dirname "$0")/.." && pwd)
COMFY_SRC=${COMFY_SRC:-/tmp/comfy/ComfyUI}
COMFY_VENV=${COMFY_VENV:-/tmp/comfy/venv}
LOOM_PYTHON=${LOOM_PYTHON:-/work/main/.venv/bin/python}
PORT=${PORT:-8212}

[ -f "$COMFY_SRC/tests/execution/test_execution.py" ] || { echo "no ComfyUI suite at $COMFY_SRC" >&2; exit 2; }
WORK=$(mktemp -d /tmp/loom-comfy-suite.XXXXXX)
if [ -z "${KEEP:-}" ]; then trap 'rm -rf "$WORK"' EXIT; else echo "suite folder: $WORK"; fi

mkdir -p "$WORK/tests" "$WORK/comfy_execution" "$WORK/bin"
cp "$COMFY_SRC/tests/conftest.py" "$WORK/tests/"
cp -r "$COMFY_SRC/tests/execution" "$WORK/tests/"
cp "$COMFY_SRC/comfy_execution/graph_utils.py" "$WORK/comfy_execution/"
cp "$COMFY_SRC/pytest.ini" "$WORK/"
# The suite's `python` (client side and the server launcher) is the ComfyUI venv's.
printf '#!/bin/sh\nexec "%s" "$@"\n' "$COMFY_VENV/bin/python" > "$WORK/bin/python"
chmod +x "$WORK/bin/python"
cat > "$WORK/main.py" <<PY
# Stands in for ComfyUI's main.py: runs Loom's server with the arguments the suite passes. Each start
# gets a fresh queue/history database: ComfyUI's history lives in memory and the suite counts on a new
# server starting empty, while Loom's is kept on disk across restarts.
import os, sys, tempfile
os.environ.setdefault("OMP_NUM_THREADS", "1")
database = tempfile.mkstemp(suffix=".db", dir="$WORK")[1]
os.unlink(database)
os.execv("$LOOM_PYTHON", ["$LOOM_PYTHON", "$LOOM/main.py", *sys.argv[1:], "--database", database])
PY

cd "$WORK"
export OMP_NUM_THREADS=1
PATH="$WORK/bin:$PATH" python -m pytest tests/execution --skip-timing-checks --port "$PORT" \
  -p no:cacheprovider -q -o addopts="" "$@"
