"""Same upscale model file, same input image through ComfyUI and Loom: PSNR of the two results.

Writes random-weight stand-ins (ESRGAN old layout, RealESRGAN new layout, compact SRVGG ×2) into
MODELS/upscale_models, uploads one input image larger than a 512 tile to both servers, runs
LoadImage → UpscaleModelLoader → ImageUpscaleWithModel → SaveImage on each and prints the PSNR per
model (target ≥ 30 dB). Both servers must already run and see MODELS, e.g. with an
--extra-model-paths-config whose section says `upscale_models: <MODELS>/upscale_models`.

    python bench/upscale_parity.py --comfy 8323 --loom 8223 --models /tmp/upscale-bench-models
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr  # bench/comfy_client.py, beside this script
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.nodes.upscale_fixtures import (
    compact_layout,
    esrgan_new_layout,
    esrgan_old_layout,
    write_standin,
)

MODELS = {
    "bench_esrgan_old.safetensors": esrgan_old_layout,
    "bench_realesrgan_new.safetensors": esrgan_new_layout,
    "bench_compact_x2.safetensors": compact_layout,
}
INPUT_NAME = "upscale_parity_input.png"


def _request(port: int, path: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return bytes(response.read())
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"port {port} {path}: {error.code} {error.read().decode()[:500]}") from None


def upload(port: int, png: bytes) -> None:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{INPUT_NAME}"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body += (
        png + f'\r\n--{boundary}\r\nContent-Disposition: form-data; name="overwrite"\r\n\r\ntrue\r\n'.encode()
    )
    body += f"--{boundary}--\r\n".encode()
    _request(port, "/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})


def prompt_for(model_name: str) -> dict[str, Any]:
    return {
        "load": {"class_type": "LoadImage", "inputs": {"image": INPUT_NAME}},
        "model": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}},
        "up": {
            "class_type": "ImageUpscaleWithModel",
            "inputs": {"upscale_model": ["model", 0], "image": ["load", 0]},
        },
        "save": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "upscale_parity", "images": ["up", 0]},
        },
    }


def run(port: int, prompt: dict[str, Any], timeout: float) -> np.ndarray:
    body = json.dumps({"prompt": prompt}).encode()
    prompt_id = json.loads(_request(port, "/prompt", body, {"Content-Type": "application/json"}))["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = json.loads(_request(port, f"/history/{prompt_id}"))
        if prompt_id in history:
            entry = history[prompt_id]
            if entry.get("status", {}).get("status_str") == "error":
                raise RuntimeError(f"port {port}: {json.dumps(entry['status']['messages'])[:500]}")
            image = entry["outputs"]["save"]["images"][0]
            query = urllib.parse.urlencode(image)
            return np.asarray(Image.open(io.BytesIO(_request(port, f"/view?{query}"))).convert("RGB"))
        time.sleep(0.5)
    raise RuntimeError(f"port {port}: timed out after {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--comfy", type=int, required=True, help="ComfyUI port")
    parser.add_argument("--loom", type=int, required=True, help="Loom port")
    parser.add_argument("--models", type=Path, required=True, help="models folder both servers read")
    parser.add_argument("--width", type=int, default=600, help="input width (over 512: several tiles)")
    parser.add_argument("--height", type=int, default=544)
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    for name, layout in MODELS.items():
        write_standin(args.models / "upscale_models" / name, layout())
    rng = np.random.default_rng(0)
    # Smooth content plus noise: a gradient image is what upscalers see, the noise exercises every tile.
    y, x = np.mgrid[0 : args.height, 0 : args.width]
    base = np.stack([x / args.width, y / args.height, 0.5 + 0.5 * np.sin(x / 23.0 + y / 31.0)], axis=-1)
    pixels = np.clip(base * 200 + rng.normal(0, 20, base.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    for port in (args.comfy, args.loom):
        upload(port, buffer.getvalue())
    worst = math.inf
    for name in MODELS:
        started = time.time()
        comfy = run(args.comfy, prompt_for(name), args.timeout)
        comfy_s = time.time() - started
        started = time.time()
        loom = run(args.loom, prompt_for(name), args.timeout)
        loom_s = time.time() - started
        if comfy.shape != loom.shape:
            print(f"{name}: shapes differ: ComfyUI {comfy.shape}, Loom {loom.shape}")
            worst = -math.inf
            continue
        value = psnr(comfy, loom)
        worst = min(worst, value)
        print(
            f"{name}: {pixels.shape[1]}×{pixels.shape[0]} → {loom.shape[1]}×{loom.shape[0]}  "
            f"PSNR {value:.2f} dB  max |Δ| {int(np.abs(comfy.astype(int) - loom).max())}  "
            f"ComfyUI {comfy_s:.1f} s, Loom {loom_s:.1f} s"
        )
    print(f"worst PSNR {worst:.2f} dB ({'meets' if worst >= 30 else 'misses'} the 30 dB target)")


if __name__ == "__main__":
    main()
