"""MODEL patches through ComfyUI's ModelPatcher API: the same patch node, checkpoint and seed on
ComfyUI and on Loom, PSNR of the two images.

Both servers must already run, see the same checkpoint and load the same patch nodes: ComfyUI's
own FreeU and FreeU_V2 (for Loom, a copy of ComfyUI's comfy_extras/nodes_freelunch.py in a
custom-nodes folder outside the repository: it is GPL and never committed) and the test pack
tests/packs/model_patch_pack (a cfg function, an output-block patch and an attn2 replacement by
block id), given to both with `custom_nodes:` in an --extra-model-paths-config file. Each row also
shows how far the patch moved the image from the unpatched one on each side, so a patch that did
nothing cannot pass unnoticed. Target: PSNR >= 30 dB between the servers for every patch.

    python bench/patch_parity.py --comfy 8311 --loom 8211 --ckpt comfy_sd15_bench.safetensors
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image  # bench/comfy_client.py, beside this script

PATCHES: dict[str, dict[str, Any] | None] = {
    "none": None,
    "FreeU": {"class_type": "FreeU", "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
    "FreeU_V2": {"class_type": "FreeU_V2", "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
    "PatchRescaleCFG": {"class_type": "PatchRescaleCFG", "inputs": {"multiplier": 0.7}},
    "PatchFreeULike": {"class_type": "PatchFreeULike", "inputs": {"b": 1.2, "s": 0.6}},
    "PatchAttentionReplace": {
        "class_type": "PatchAttentionReplace",
        "inputs": {"block": "input", "number": 1, "context_scale": 0.5},
    },
}


def workflow(ckpt: str, patch: dict[str, Any] | None, seed: int, size: int, steps: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "latent": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["patch", 0] if patch else ["ckpt", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "positive": ["pos", 0],
                "negative": ["neg", 0],
                "latent_image": ["latent", 0],
                "denoise": 1.0,
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "patch_parity", "images": ["decode", 0]},
        },
    }
    if patch:
        prompt["patch"] = {
            "class_type": patch["class_type"],
            "inputs": {**patch["inputs"], "model": ["ckpt", 0]},
        }
    return prompt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=int, required=True, help="ComfyUI's port")
    parser.add_argument("--loom", type=int, required=True, help="Loom's port")
    parser.add_argument("--ckpt", required=True, help="checkpoint name both servers list")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()

    images: dict[str, dict[int, np.ndarray | str]] = {}
    for name, patch in PATCHES.items():
        prompt = workflow(args.ckpt, patch, args.seed, args.size, args.steps)
        images[name] = {
            port: saved_image(port, queue_prompt(port, prompt)) for port in (args.comfy, args.loom)
        }

    print(f"{'patch':24} {'ComfyUI vs Loom':>16} {'ComfyUI vs unpatched':>21} {'Loom vs unpatched':>18}")
    passed = 0
    for name, pair in images.items():
        comfy, loom = pair[args.comfy], pair[args.loom]
        if isinstance(comfy, str) or isinstance(loom, str):
            print(f"{name:24} failed: ComfyUI {comfy if isinstance(comfy, str) else 'ok'}; "
                  f"Loom {loom if isinstance(loom, str) else 'ok'}")  # fmt: skip
            continue
        base_c, base_l = images["none"][args.comfy], images["none"][args.loom]
        moved_c = psnr(comfy, base_c) if isinstance(base_c, np.ndarray) else math.nan
        moved_l = psnr(loom, base_l) if isinstance(base_l, np.ndarray) else math.nan
        score = psnr(comfy, loom)
        passed += score >= 30
        print(f"{name:24} {score:14.1f} dB {moved_c:18.1f} dB {moved_l:15.1f} dB")
    print(f"summary: {passed}/{len(images)} patches at PSNR >= 30 dB between ComfyUI and Loom "
          f"({args.size}x{args.size}, {args.steps} euler steps, seed {args.seed})")  # fmt: skip


if __name__ == "__main__":
    main()
