"""Same workflow, same checkpoint, same seed on ComfyUI and on Loom: PSNR of the two images per sampler.

Both servers must already run and see the same checkpoint (ComfyUI detects SD1.5 only with full-size
CLIP-L and VAE: write one with `bench/make_comfy_sd15.py`, and give both servers the folder with
`--extra-model-paths-config`). For every sampler both servers offer × each scheduler it runs KSampler at
64×64, then the custom-sampling path (SamplerCustomAdvanced + BasicScheduler + CFGGuider + RandomNoise +
KSamplerSelect) against KSampler on the other server, when both servers have those nodes. Target: PSNR ≥
30 dB for every pair.

    python bench/sampler_parity.py --comfy 8317 --loom 8217 --ckpt comfy_sd15_bench.safetensors
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import time
import urllib.parse
import urllib.request
from typing import Any

import numpy as np
from PIL import Image

CUSTOM_NODES = ("SamplerCustomAdvanced", "BasicScheduler", "CFGGuider", "RandomNoise", "KSamplerSelect")


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        return response.read()


def _post_prompt(port: int, prompt: dict[str, Any]) -> str:
    body = json.dumps({"prompt": prompt}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/prompt", data=body, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return str(json.load(response)["prompt_id"])
    except urllib.error.HTTPError as error:
        raise RuntimeError(f"port {port} rejected the prompt: {error.read().decode()[:500]}") from None


def _image(port: int, prompt_id: str, timeout: float) -> np.ndarray | str:
    """The saved image of a finished prompt, or the error message when it failed."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        history = json.loads(_get(port, f"/history/{prompt_id}"))
        if prompt_id in history:
            entry = history[prompt_id]
            if entry.get("status", {}).get("status_str") == "error":
                errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
                return str(errors[0].get("exception_message", errors[0]))[:200] if errors else "error"
            for output in entry["outputs"].values():
                for image in output.get("images", []):
                    query = urllib.parse.urlencode({**image, "type": image.get("type", "output")})
                    return np.asarray(Image.open(io.BytesIO(_get(port, f"/view?{query}"))).convert("RGB"))
            return "no image"
        time.sleep(0.3)
    return "timed out"


def _common(ckpt: str, seed: int, prefix: str) -> dict[str, Any]:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": f"{prefix}_s{seed}", "images": ["decode", 0]},
        },
    }


def ksampler_prompt(ckpt: str, sampler: str, scheduler: str, steps: int, seed: int) -> dict[str, Any]:
    prompt = _common(ckpt, seed, f"ks_{sampler}_{scheduler}")
    prompt["sample"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed,
            "steps": steps,
            "cfg": 5.0,
            "sampler_name": sampler,
            "scheduler": scheduler,
            "denoise": 1.0,
            "model": ["ckpt", 0],
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "latent_image": ["latent", 0],
        },
    }
    return prompt


def custom_prompt(ckpt: str, sampler: str, scheduler: str, steps: int, seed: int) -> dict[str, Any]:
    prompt = _common(ckpt, seed, f"sca_{sampler}_{scheduler}")
    prompt |= {
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "guider": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 5.0},
        },
        "select": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": sampler}},
        "sigmas": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["ckpt", 0], "scheduler": scheduler, "steps": steps, "denoise": 1.0},
        },
        "sample": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", 0],
                "guider": ["guider", 0],
                "sampler": ["select", 0],
                "sigmas": ["sigmas", 0],
                "latent_image": ["latent", 0],
            },
        },
    }
    return prompt


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a.astype(np.float64) - b.astype(np.float64)) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255**2 / mse)


def _sampler_names(port: int) -> list[str]:
    info = json.loads(_get(port, "/object_info/KSampler"))["KSampler"]
    return list(info["input"]["required"]["sampler_name"][0])


def _has_nodes(port: int) -> bool:
    names = set(json.loads(_get(port, "/object_info")))
    return all(node in names for node in CUSTOM_NODES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=int, default=8317, help="ComfyUI's port")
    parser.add_argument("--loom", type=int, default=8217, help="Loom's port")
    parser.add_argument("--ckpt", default="comfy_sd15_bench.safetensors")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--schedulers", default="normal,karras")
    parser.add_argument("--samplers", default="", help="comma-separated subset (default: all shared)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()

    comfy_names, loom_names = _sampler_names(args.comfy), _sampler_names(args.loom)
    shared = [name for name in comfy_names if name in loom_names]
    if args.samplers:
        shared = [name for name in shared if name in args.samplers.split(",")]
    schedulers = args.schedulers.split(",")
    jobs: list[tuple[str, int, dict[str, Any], int, dict[str, Any]]] = []
    for scheduler in schedulers:
        for sampler in shared:
            prompt = ksampler_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            jobs.append((f"KSampler {sampler} / {scheduler}", args.comfy, prompt, args.loom, prompt))
    if _has_nodes(args.comfy) and _has_nodes(args.loom):
        for sampler in ("euler", "euler_ancestral", "dpmpp_2m_sde"):
            scheduler = schedulers[0]
            ks = ksampler_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            sca = custom_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            label = f"{sampler} / {scheduler}"
            jobs.append(
                (f"ComfyUI KSampler vs Loom SamplerCustomAdvanced {label}", args.comfy, ks, args.loom, sca)
            )
            jobs.append(
                (f"ComfyUI SamplerCustomAdvanced vs Loom KSampler {label}", args.comfy, sca, args.loom, ks)
            )
    else:
        print("custom-sampling pairs skipped: a server lacks one of", ", ".join(CUSTOM_NODES))

    # Queue everything on both servers first, so that the two run side by side.
    queued = [(label, cp, _post_prompt(cp, cq), lp, _post_prompt(lp, lq)) for label, cp, cq, lp, lq in jobs]
    results: list[tuple[str, float | str]] = []
    for label, comfy_port, comfy_id, loom_port, loom_id in queued:
        a, b = _image(comfy_port, comfy_id, args.timeout), _image(loom_port, loom_id, args.timeout)
        value: float | str
        if isinstance(a, str) or isinstance(b, str):
            value = f"ComfyUI: {a if isinstance(a, str) else 'ok'}; Loom: {b if isinstance(b, str) else 'ok'}"
        else:
            value = psnr(a, b)
        results.append((label, value))
        shown = f"{value:7.2f} dB" if isinstance(value, float) else value
        print(f"{label:70s} {shown}", flush=True)

    numbers = [v for _, v in results if isinstance(v, float)]
    below = [label for label, v in results if isinstance(v, float) and v < 30]
    failed = [label for label, v in results if isinstance(v, str)]
    print(
        f"\n{len(numbers)} pairs compared, min PSNR {min(numbers):.2f} dB, "
        f"{len(below)} below 30 dB, {len(failed)} failed; samplers only in ComfyUI: "
        f"{', '.join(n for n in comfy_names if n not in loom_names) or 'none'}"
    )
    return 1 if below or failed else 0


if __name__ == "__main__":
    sys.exit(main())
