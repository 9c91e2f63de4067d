"""ComfyUI-Easy-Use's SD1.5 pipe on ComfyUI and on Loom: `easy comfyLoader` -> `easy preSampling` ->
`easy kSampler` (the pack's own loader, encoder and sampler code, which goes through comfy.sd,
comfy.samplers, comfy.sample, comfy.supported_models and the pipe dict) against the plain built-in
graph on each side, same checkpoint and seed; PSNR of every pair.

    flock /tmp/comfy.lock /work/main/.venv/bin/python bench/easyuse_pipe_parity.py \
        [--ckpt-dir /tmp/benchmodels --ckpt comfy_sd15.safetensors] [--keep]

The pack is extracted from its fetched git mirror into a temporary custom-nodes folder (never into
this repository: it is GPL) and given to both servers with the checkpoint folder
(bench/pack_servers.py: ComfyUI 0.3.64 on the CPU, then Loom).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image  # bench/, beside this script
from pack_servers import server, temp_work, write_paths_config
from packs_compat import extract_pack

PACK = "ComfyUI-Easy-Use"


def pipe(ckpt: str, seed: int, size: int, steps: int) -> dict[str, Any]:
    loader = {
        "ckpt_name": ckpt, "vae_name": "Baked VAE", "clip_skip": -1, "lora_name": "None",
        "lora_model_strength": 1.0, "lora_clip_strength": 1.0, "resolution": "width x height (custom)",
        "empty_latent_width": size, "empty_latent_height": size, "positive": "a red circle",
        "negative": "", "batch_size": 1,
    }  # fmt: skip
    settings = {"steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0}
    return {
        "1": {"class_type": "easy comfyLoader", "inputs": loader},
        "2": {"class_type": "easy preSampling", "inputs": {"pipe": ["1", 0], "seed": seed, **settings}},
        "3": {"class_type": "easy kSampler",
              "inputs": {"pipe": ["2", 0], "image_output": "Hide", "link_id": 0, "save_prefix": "easy"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 1], "filename_prefix": "easyuse_pipe"}},
    }  # fmt: skip


def plain(ckpt: str, seed: int, size: int, steps: int) -> dict[str, Any]:
    sampler = {"seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler", "scheduler": "normal",
               "denoise": 1.0, "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0],
               "latent_image": ["5", 0]}  # fmt: skip
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {"class_type": "KSampler", "inputs": sampler},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "plain", "images": ["8", 0]}},
    }


def run_side(
    side: str, port: int, config: Path, work: Path, deps: str, prompts: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray | str]:
    images: dict[str, np.ndarray | str] = {}
    with server(side, port, config, work, deps):
        for name, prompt in prompts.items():
            try:
                images[name] = saved_image(port, queue_prompt(port, prompt))
            except RuntimeError as exc:
                images[name] = str(exc)[:200]
    return images


def score(a: np.ndarray | str, b: np.ndarray | str) -> str:
    if isinstance(a, str) or isinstance(b, str):
        return f"failed: {a if isinstance(a, str) else b}"
    value = psnr(a, b)
    return "same pixels" if value == np.inf else f"PSNR {value:.1f} dB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/benchmodels"))
    parser.add_argument("--ckpt", default="comfy_sd15.safetensors")
    parser.add_argument("--deps", default="/tmp/packdeps", help="the packs' requirements (pip --target)")
    parser.add_argument("--ports", default="19055,19056", help="ComfyUI's and Loom's ports")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep the pack, logs and images")
    args = parser.parse_args()
    comfy_port, loom_port = (int(p) for p in args.ports.split(","))
    shape = (args.ckpt, args.seed, args.size, args.steps)
    prompts = {"easy pipe": pipe(*shape), "plain KSampler": plain(*shape)}
    with temp_work("loom-easyuse-pipe-", args.keep) as scratch:
        work = Path(scratch)
        extract_pack(PACK, work / "custom_nodes" / PACK)
        config = write_paths_config(work, args.ckpt_dir, work / "custom_nodes")
        comfy = run_side("comfy", comfy_port, config, work, args.deps, prompts)
        loom = run_side("loom", loom_port, config, work, args.deps, prompts)
    rows = [
        ("easy pipe: ComfyUI vs Loom", score(comfy["easy pipe"], loom["easy pipe"])),
        ("plain KSampler: ComfyUI vs Loom", score(comfy["plain KSampler"], loom["plain KSampler"])),
        ("ComfyUI: easy pipe vs plain", score(comfy["easy pipe"], comfy["plain KSampler"])),
        ("Loom: easy pipe vs plain", score(loom["easy pipe"], loom["plain KSampler"])),
    ]
    for label, result in rows:
        print(f"{label:34} {result}")
    print(f"({args.size}x{args.size}, {args.steps} euler steps, seed {args.seed}, {args.ckpt})")
    return 0 if not any(r.startswith("failed") for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
