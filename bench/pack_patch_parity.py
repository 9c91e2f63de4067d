"""Real node packs' MODEL patches on ComfyUI and on Loom: the same pack node, checkpoint and seed on
both, PSNR of the two images.

    flock /tmp/comfy.lock /work/main/.venv/bin/python bench/pack_patch_parity.py \
        [--ckpt-dir /tmp/benchmodels --ckpt comfy_sd15.safetensors] [--keep]

The packs (ComfyUI-KJNodes, ComfyUI_essentials) are extracted from their fetched git mirrors into a
temporary custom-nodes folder (never into this repository: they are GPL), given to both servers
with the checkpoint folder through an extra_model_paths.yaml, and each server is started in turn
(bench/pack_servers.py; ComfyUI 0.3.64 on the CPU, then Loom). Every patch node is one the pack
ships, unchanged; each goes through a different part of the ModelPatcher API:

- `GuidanceTimestepping+` (essentials): `set_model_sampler_cfg_function`, with
  `get_model_object("model_sampling").percent_to_sigma`;
- `CFGZeroStarAndInit` (KJNodes): `set_model_sampler_cfg_function` reading
  `transformer_options["sample_sigmas"]` to find the step;
- `DifferentialDiffusionAdvanced` (KJNodes): `set_model_denoise_mask_function` on an inpainting
  latent (its mask from KJNodes' `CreateGradientMask`), reading `extra_options["model"].inner_model
  .model_sampling` and `extra_options["sigmas"]`.

Each row also shows how far the patch moved the image from the unpatched one on each side, so a
patch that did nothing cannot pass unnoticed. Target: PSNR >= 30 dB between the servers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image  # bench/, beside this script
from pack_servers import server, temp_work, write_paths_config
from packs_compat import extract_pack

PACKS = ("ComfyUI-KJNodes", "ComfyUI_essentials")
Link = list[Any]


def _patch(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"patch": {"class_type": class_type, "inputs": {**inputs, "model": ["ckpt", 0]}}}


def _differential(size: int) -> dict[str, Any]:
    """DifferentialDiffusionAdvanced on a grey image's latent with a left-to-right gradient mask."""
    return {
        "image": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                           "color": 0x808080}},
        "encoded": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2]}},
        "mask": {"class_type": "CreateGradientMask",
                 "inputs": {"invert": False, "frames": 1, "width": size, "height": size}},
        "patch": {"class_type": "DifferentialDiffusionAdvanced",
                  "inputs": {"model": ["ckpt", 0], "samples": ["encoded", 0], "mask": ["mask", 0],
                             "multiplier": 1.0}},
    }  # fmt: skip


def cases(size: int) -> dict[str, tuple[dict[str, Any], Link, Link | None, float]]:
    """name -> (extra nodes, MODEL link, LATENT link or None for an empty latent, denoise)."""
    return {
        "none": ({}, ["ckpt", 0], None, 1.0),
        "GuidanceTimestepping+": (
            _patch("GuidanceTimestepping+", value=2.0, start_at=0.2, end_at=0.8),
            ["patch", 0],
            None,
            1.0,
        ),
        "CFGZeroStarAndInit": (
            _patch("CFGZeroStarAndInit", use_zero_init=True, zero_init_steps=0),
            ["patch", 0],
            None,
            1.0,
        ),
        "DifferentialDiffusionAdvanced": (_differential(size), ["patch", 0], ["patch", 1], 0.8),
    }


def workflow(
    ckpt: str, extra: dict[str, Any], model: Link, latent: Link | None, denoise: float,
    seed: int, size: int, steps: int,
) -> dict[str, Any]:  # fmt: skip
    prompt: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "empty": {"class_type": "EmptyLatentImage",
                  "inputs": {"width": size, "height": size, "batch_size": 1}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "sample": {
            "class_type": "KSampler",
            "inputs": {
                "model": model, "seed": seed, "steps": steps, "cfg": 7.0, "sampler_name": "euler",
                "scheduler": "normal", "positive": ["pos", 0], "negative": ["neg", 0],
                "latent_image": latent or ["empty", 0], "denoise": denoise,
            },
        },
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage",
                 "inputs": {"filename_prefix": "pack_patch", "images": ["decode", 0]}},
    }  # fmt: skip
    return {**prompt, **extra}


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
            print(f"{side} {name}: {'ok' if isinstance(images[name], np.ndarray) else images[name]}",
                  file=sys.stderr, flush=True)  # fmt: skip
    return images


def report(comfy: dict[str, np.ndarray | str], loom: dict[str, np.ndarray | str], note: str) -> int:
    head = f"{'ComfyUI vs Loom':>16} {'ComfyUI vs unpatched':>21} {'Loom vs unpatched':>18}"
    print(f"{'pack patch node':30} {head}")
    passed = 0
    for name in comfy:
        c, lo = comfy[name], loom[name]
        if isinstance(c, str) or isinstance(lo, str):
            print(f"{name:30} failed: ComfyUI {c if isinstance(c, str) else 'ok'}; "
                  f"Loom {lo if isinstance(lo, str) else 'ok'}")  # fmt: skip
            continue
        base_c, base_l = comfy["none"], loom["none"]
        moved_c = psnr(c, base_c) if isinstance(base_c, np.ndarray) else math.nan
        moved_l = psnr(lo, base_l) if isinstance(base_l, np.ndarray) else math.nan
        score = psnr(c, lo)
        passed += score >= 30
        print(f"{name:30} {score:14.1f} dB {moved_c:18.1f} dB {moved_l:15.1f} dB")
    print(f"summary: {passed}/{len(comfy)} at PSNR >= 30 dB between ComfyUI and Loom ({note})")
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/benchmodels"))
    parser.add_argument("--ckpt", default="comfy_sd15.safetensors")
    parser.add_argument("--deps", default="/tmp/packdeps", help="the packs' requirements (pip --target)")
    parser.add_argument("--comfy-port", type=int, default=19051)
    parser.add_argument("--loom-port", type=int, default=19052)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep packs, logs and images")
    args = parser.parse_args()
    with temp_work("loom-pack-patch-", args.keep) as scratch:
        work = Path(scratch)
        custom = work / "custom_nodes"
        for name in PACKS:
            extract_pack(name, custom / name)
        config = write_paths_config(work, args.ckpt_dir, custom)
        prompts = {
            name: workflow(args.ckpt, extra, model, latent, denoise, args.seed, args.size, args.steps)
            for name, (extra, model, latent, denoise) in cases(args.size).items()
        }
        comfy = run_side("comfy", args.comfy_port, config, work, args.deps, prompts)
        loom = run_side("loom", args.loom_port, config, work, args.deps, prompts)
        note = f"{args.size}x{args.size}, {args.steps} euler steps, seed {args.seed}"
        passed = report(comfy, loom, note)
        if args.keep:
            print(f"kept in {work}", file=sys.stderr)
    return 0 if passed == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
