"""A small HTTP client of ComfyUI's API, shared by the parity benches that run one workflow on a CPU
ComfyUI and on Loom side by side: queue a prompt, wait for its saved image, compare two images."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

# The start of the scripts the parity benches run in ComfyUI's venv: their JSON arguments (`args`, with
# `comfy_root`), ComfyUI's own argument parsing on the CPU, one torch thread.
COMFY_DRIVER_HEAD = """
import json, sys
args = json.loads(sys.argv[1])
sys.argv = ["parity", "--cpu"]
sys.path.insert(0, args["comfy_root"])
import torch
torch.set_num_threads(1)
import comfy.options
comfy.options.enable_args_parsing()
"""


def get(port: int, path: str, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return bytes(response.read())


def queue_prompt(port: int, prompt: dict[str, Any], timeout: float = 120) -> str:
    """POST /prompt; the prompt id, or a RuntimeError with the server's answer."""
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/prompt", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return str(json.load(response)["prompt_id"])
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"port {port} rejected the prompt: {error.read().decode()[:500]}") from None


def saved_image(port: int, prompt_id: str, timeout: float = 900) -> np.ndarray | str:
    """The first saved image of a finished prompt as RGB, or why there is none (its error message)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = json.loads(get(port, f"/history/{prompt_id}"))
        if prompt_id in history:
            entry = history[prompt_id]
            if entry.get("status", {}).get("status_str") == "error":
                errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
                return str(errors[0].get("exception_message", errors[0]))[:200] if errors else "error"
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    query = urllib.parse.urlencode({**image, "type": image.get("type", "output")})
                    return np.asarray(Image.open(io.BytesIO(get(port, f"/view?{query}"))).convert("RGB"))
            return "no image"
        time.sleep(0.3)
    return "timed out"


def saved_images(port: int, prompt_id: str, timeout: float = 900) -> dict[str, list[np.ndarray]] | str:
    """Every saved image of a finished prompt as RGB, by output node id; or why there is none."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = json.loads(get(port, f"/history/{prompt_id}"))
        if prompt_id in history:
            entry = history[prompt_id]
            if entry.get("status", {}).get("status_str") == "error":
                errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
                return str(errors[0].get("exception_message", errors[0]))[:200] if errors else "error"
            found: dict[str, list[np.ndarray]] = {}
            for node_id, output in entry["outputs"].items():
                for image in output.get("images", []):
                    query = urllib.parse.urlencode({**image, "type": image.get("type", "output")})
                    picture = Image.open(io.BytesIO(get(port, f"/view?{query}"))).convert("RGB")
                    found.setdefault(node_id, []).append(np.asarray(picture))
            return found or "no image"
        time.sleep(0.3)
    return "timed out"


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two 8-bit images in dB (inf when identical)."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def upload_image(port: int, name: str, png: bytes) -> None:
    """POST /upload/image (multipart, overwriting a file of the same name in the input folder)."""
    import uuid

    boundary = uuid.uuid4().hex
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    tail = (
        f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'
        f"--{boundary}--\r\n"
    )
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/upload/image",
        data=head + png + tail.encode(),
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read()


@contextlib.contextmanager
def serving(
    command: list[str], cwd: Path, env: dict[str, str], port: int, log: Path, timeout: float = 600
) -> Iterator[subprocess.Popen[bytes]]:
    """A server started with `command` (output to `log`), once it answers /object_info on `port`;
    stopped with its children (its own process group) when the context ends."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        _wait_ready(port, process, log, timeout)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_ready(port: int, process: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server on port {port} exited; see {log}:\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/object_info", timeout=30):
                return
        except OSError:
            time.sleep(1)
    raise RuntimeError(f"server on port {port} not ready after {timeout:.0f} s; see {log}")
