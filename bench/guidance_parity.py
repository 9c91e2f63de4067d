"""Guidance patches and samplers on ComfyUI and on Loom: the same graph, checkpoint and seed on both, PSNR
of the two images.

Rows: SelfAttentionGuidance, PerturbedAttentionGuidance, HyperTile (a fixed tiling, and one whose
tile counts are drawn from the seeded global generator), PerpNeg, ModelSamplingContinuousEDM (eps),
FreeU and FreeU_V2 (on a checkpoint whose levels trigger FreeU, when `--freeu-ckpt` is given), and
the SamplerEulerAncestralCFGPP, SamplerEulerCFGpp and SamplerSASolver samplers through SamplerCustom.
Each row also shows how far the change moved the image from the plain one on each side, so that a
patch doing nothing cannot pass unnoticed. Target: PSNR >= 30 dB between the servers for every row.

Both servers must already run and list the checkpoints (ComfyUI detects SD1.5 only with full-size CLIP-L
and VAE: `bench/make_comfy_sd15.py`; give both servers its folder with --extra-model-paths-config).

    python bench/guidance_parity.py --comfy 18851 --loom 18852 --ckpt comfy_sd15.safetensors \
        [--freeu-ckpt comfy_sd15_640.safetensors]
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image  # bench/comfy_client.py, beside this script

Row = dict[str, Any]

PATCHES: dict[str, Row] = {
    "SelfAttentionGuidance": {
        "class_type": "SelfAttentionGuidance",
        "inputs": {"scale": 0.5, "blur_sigma": 2.0},
    },
    "PerturbedAttentionGuidance": {"class_type": "PerturbedAttentionGuidance", "inputs": {"scale": 3.0}},
    "HyperTile 64/2": {
        "class_type": "HyperTile",
        "inputs": {"tile_size": 64, "swap_size": 2, "max_depth": 0, "scale_depth": False},
    },
    "HyperTile 32/3 depth 1": {
        "class_type": "HyperTile",
        "inputs": {"tile_size": 32, "swap_size": 3, "max_depth": 1, "scale_depth": False},
    },
    "PerpNeg": {"class_type": "PerpNeg", "inputs": {"neg_scale": 1.0, "empty_conditioning": ["empty", 0]}},
    "ModelSamplingContinuousEDM eps": {
        "class_type": "ModelSamplingContinuousEDM",
        "inputs": {"sampling": "eps", "sigma_max": 14.6146, "sigma_min": 0.0292},
    },
}
FREEU: dict[str, Row] = {
    "FreeU": {"class_type": "FreeU", "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
    "FreeU_V2": {"class_type": "FreeU_V2", "inputs": {"b1": 1.3, "b2": 1.4, "s1": 0.9, "s2": 0.2}},
}
SAMPLERS: dict[str, Row] = {
    "SamplerEulerAncestralCFGPP": {
        "class_type": "SamplerEulerAncestralCFGPP",
        "inputs": {"eta": 1.0, "s_noise": 1.0},
    },
    "SamplerEulerCFGpp regular": {"class_type": "SamplerEulerCFGpp", "inputs": {"version": "regular"}},
    "SamplerEulerCFGpp alternative": {
        "class_type": "SamplerEulerCFGpp",
        "inputs": {"version": "alternative"},
    },
    "SamplerSASolver": {
        "class_type": "SamplerSASolver",
        "inputs": {
            "model": ["ckpt", 0],
            "eta": 1.0,
            "sde_start_percent": 0.2,
            "sde_end_percent": 0.8,
            "s_noise": 1.0,
            "predictor_order": 3,
            "corrector_order": 4,
            "use_pece": False,
            "simple_order_2": False,
        },
    },
}


def base(ckpt: str, size: int, prefix: str) -> dict[str, Any]:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "latent": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "empty": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["ckpt", 1]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {"class_type": "SaveImage", "inputs": {"filename_prefix": prefix, "images": ["decode", 0]}},
    }


def ksampler(ckpt: str, patch: Row | None, seed: int, size: int, steps: int) -> dict[str, Any]:
    prompt = base(ckpt, size, "guidance_parity")
    prompt["sample"] = {
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
    }
    if patch:
        prompt["patch"] = {
            "class_type": patch["class_type"],
            "inputs": {**patch["inputs"], "model": ["ckpt", 0]},
        }
    return prompt


def custom(ckpt: str, sampler: Row, seed: int, size: int, steps: int) -> dict[str, Any]:
    prompt = base(ckpt, size, "guidance_parity_sampler")
    prompt["sampler"] = sampler
    prompt["sigmas"] = {
        "class_type": "BasicScheduler",
        "inputs": {"model": ["ckpt", 0], "scheduler": "normal", "steps": steps, "denoise": 1.0},
    }
    prompt["sample"] = {
        "class_type": "SamplerCustom",
        "inputs": {
            "model": ["ckpt", 0],
            "add_noise": True,
            "noise_seed": seed,
            "cfg": 7.0,
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "sampler": ["sampler", 0],
            "sigmas": ["sigmas", 0],
            "latent_image": ["latent", 0],
        },
    }
    return prompt


def run_both(ports: tuple[int, int], prompt: dict[str, Any]) -> dict[int, np.ndarray | str]:
    out: dict[int, np.ndarray | str] = {}
    for port in ports:
        try:
            out[port] = saved_image(port, queue_prompt(port, prompt))
        except RuntimeError as error:
            out[port] = str(error)[:200]
    return out


def report(name: str, pair: dict[int, Any], plain: dict[int, Any], ports: tuple[int, int]) -> bool:
    comfy, loom = pair[ports[0]], pair[ports[1]]
    if isinstance(comfy, str) or isinstance(loom, str):
        print(f"{name:32} failed: ComfyUI {comfy if isinstance(comfy, str) else 'ok'}; "
              f"Loom {loom if isinstance(loom, str) else 'ok'}")  # fmt: skip
        return False
    moved = [psnr(img, plain[p]) if isinstance(plain[p], np.ndarray) else math.nan for p, img in pair.items()]
    score = psnr(comfy, loom)
    print(f"{name:32} {score:10.1f} dB {moved[0]:14.1f} dB {moved[1]:14.1f} dB")
    return score >= 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=int, required=True, help="ComfyUI's port")
    parser.add_argument("--loom", type=int, required=True, help="Loom's port")
    parser.add_argument("--ckpt", required=True, help="checkpoint name both servers list")
    parser.add_argument("--freeu-ckpt", help="a checkpoint whose channel widths trigger FreeU (320,640)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    ports = (args.comfy, args.loom)
    settings = (args.seed, args.size, args.steps)

    print(f"{'row':32} {'ComfyUI vs Loom':>13} {'ComfyUI moved':>17} {'Loom moved':>17}")
    plain = run_both(ports, ksampler(args.ckpt, None, *settings))
    results = [report("plain KSampler euler", plain, plain, ports)]
    for name, patch in PATCHES.items():
        results.append(report(name, run_both(ports, ksampler(args.ckpt, patch, *settings)), plain, ports))
    if args.freeu_ckpt:
        plain_freeu = run_both(ports, ksampler(args.freeu_ckpt, None, *settings))
        results.append(report("plain (FreeU checkpoint)", plain_freeu, plain_freeu, ports))
        for name, patch in FREEU.items():
            pair = run_both(ports, ksampler(args.freeu_ckpt, patch, *settings))
            results.append(report(name, pair, plain_freeu, ports))
    for name, sampler in SAMPLERS.items():
        results.append(report(name, run_both(ports, custom(args.ckpt, sampler, *settings)), plain, ports))
    print(f"summary: {sum(results)}/{len(results)} rows at PSNR >= 30 dB between ComfyUI and Loom "
          f"({args.size}x{args.size}, {args.steps} steps, seed {args.seed})")  # fmt: skip


if __name__ == "__main__":
    main()
