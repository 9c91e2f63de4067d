"""Start ComfyUI and Loom side by side with the same node packs, checkpoints and the packs'
requirements, for the benches that compare them through the HTTP API (pack_patch_parity.py,
packs_compat.py's smoke workflows). Each server runs in its own process group and is stopped
(with its children) when the `servers` context ends.

Both sides see the packs' requirements from a `pip install --target` folder (default
/tmp/packdeps) appended to sys.path after their own venv; Loom also reads the ComfyUI venv's
third-party modules after its own (as packs_compat.py's probes do). ComfyUI's side must run under
the shared lock: `flock /tmp/comfy.lock python bench/...`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from comfy_client import serving  # bench/comfy_client.py

LOOM = Path(__file__).resolve().parents[1]
COMFY_SRC = Path("/tmp/comfy/ComfyUI")
COMFY_PYTHON = "/tmp/comfy/venv/bin/python"
LOOM_PYTHON = "/work/main/.venv/bin/python"
COMFY_SITE = "/tmp/comfy/venv/lib/python3.11/site-packages"

# main.py run with extra folders at the end of sys.path (runpy keeps `__main__` semantics).
_LAUNCH = (
    "import runpy, sys; extra = sys.argv[1].split(':'); sys.path.extend(p for p in extra if p); "
    "sys.argv = ['main.py', *sys.argv[2:]]; runpy.run_path('main.py', run_name='__main__')"
)


def write_paths_config(folder: Path, checkpoints: Path, custom_nodes: Path) -> Path:
    """An extra_model_paths.yaml giving both servers the same checkpoints and node packs."""
    config = folder / "extra_model_paths.yaml"
    config.write_text(f"bench:\n    checkpoints: {checkpoints}\n    custom_nodes: {custom_nodes}\n")
    return config


@contextlib.contextmanager
def server(
    side: str, port: int, config: Path, work: Path, deps: str, timeout: float = 600,
    inputs: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:  # fmt: skip
    """One server ("comfy" or "loom") on 127.0.0.1:`port`, output under `work/<side>-output`,
    reading LoadImage's files from `inputs` when given."""
    out = work / f"{side}-output"
    out.mkdir(parents=True, exist_ok=True)
    common = ["--listen", "127.0.0.1", "--port", str(port), "--cpu"]
    common += ["--extra-model-paths-config", str(config), "--output-directory", str(out)]
    if inputs is not None:
        common += ["--input-directory", str(inputs)]
    if side == "comfy":
        python, cwd, extra = COMFY_PYTHON, COMFY_SRC, deps
    else:
        python, cwd, extra = LOOM_PYTHON, LOOM, f"{COMFY_SITE}:{deps}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    command = [python, "-c", _LAUNCH, extra, *common]
    with serving(command, cwd, env, port, work / f"{side}.log", timeout) as process:
        yield process


def temp_work(prefix: str, keep: bool) -> contextlib.AbstractContextManager[str]:
    """A scratch folder for packs, configs, logs and outputs (kept with --keep)."""
    if keep:
        return contextlib.nullcontext(tempfile.mkdtemp(prefix=prefix))
    return tempfile.TemporaryDirectory(prefix=prefix)


if __name__ == "__main__":
    sys.exit("a helper module of the pack benches; run pack_patch_parity.py or packs_compat.py")
