"""Real node packs' MODEL patches on ComfyUI and on Loom: the same pack node, checkpoint and seed on
both, PSNR of the two images.

    flock /tmp/comfy.lock /work/main/.venv/bin/python bench/pack_patch_parity.py \
        [--ckpt-dir /tmp/benchmodels --ckpt comfy_sd15.safetensors] [--keep]

The packs (ComfyUI-KJNodes, ComfyUI_essentials, sd-perturbed-attention, ComfyUI_experiments) are
extracted from their fetched git mirrors (`fetch github:<owner>/<name>`) into a temporary
custom-nodes folder (never into this repository: they are GPL), given to both servers with the
checkpoint folder through an extra_model_paths.yaml, and each server is started in turn
(bench/pack_servers.py; ComfyUI 0.3.64 on the CPU, then Loom). sd-perturbed-attention is taken at
261c99a (2025-04-25): from 2025-06 on it imports `BasicTransformerBlock` and `CrossAttention` from
`comfy.ldm.modules.attention` (for its NAG node), which Loom lacks, and its 2026 commits declare V3
schema fields ComfyUI 0.3.64 lacks. Every patch node is one the pack ships, unchanged; each goes
through a different part of the ModelPatcher API:

- `GuidanceTimestepping+` (essentials): `set_model_sampler_cfg_function`, with
  `get_model_object("model_sampling").percent_to_sigma`;
- `CFGZeroStarAndInit` (KJNodes): `set_model_sampler_cfg_function` reading
  `transformer_options["sample_sigmas"]` to find the step;
- `DifferentialDiffusionAdvanced` (KJNodes): `set_model_denoise_mask_function` on an inpainting
  latent (its mask from KJNodes' `CreateGradientMask`), reading `extra_options["model"].inner_model
  .model_sampling` and `extra_options["sigmas"]`;
- `FluxBlocksBuster+` (essentials): `model_state_dict()` keys matched by a regular expression
  (ComfyUI's names: the output blocks' transformers), each scaled with `add_patches({k: (None,)},
  0.0, value)`;
- `PerturbedAttention` (sd-perturbed-attention): `set_model_sampler_post_cfg_function` that runs
  `comfy.samplers.calc_cond_batch` again with an attn1 replacement at `("middle", 0)` put in a copy
  of the step's model_options (`set_model_options_patch_replace`);
- `ModelSamplerTonemapNoiseTest` (ComfyUI_experiments): `set_model_sampler_cfg_function`;
- `ReferenceOnlySimple` (ComfyUI_experiments): `set_model_attn1_patch` returning keys and values
  twice as long as the query (the reference latent's tokens appended), on its two-entry latent with
  a `noise_mask`; the generated entry (index 1) is compared.

No real pack among these adds a DIFFUSION_MODEL wrapper, so the last row is Loom's own test pack
tests/packs/diffusion_model_pack (loaded by both servers): its wrapper scales the UNet's prediction
and records the arguments it was called with; the two records are compared too.

sd-perturbed-attention's SmoothedEnergyGuidanceAdvanced is left out: on these random weights it
hardly moves the image (docs/custom-nodes.md). Each row also shows how far the patch moved the
image from the unpatched one on each side, so a patch that did nothing cannot pass unnoticed.
Target: PSNR >= 30 dB between the servers.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image  # bench/, beside this script
from pack_servers import server, temp_work, write_paths_config
from packs_compat import MIRRORS, extract

# pack folder -> (mirror under /work/.mirror, revision)
PACKS = {
    "ComfyUI-KJNodes": ("kijai+ComfyUI-KJNodes", "HEAD"),
    "ComfyUI_essentials": ("cubiq+ComfyUI_essentials", "HEAD"),
    "sd-perturbed-attention": ("pamparamm+sd-perturbed-attention", "261c99a"),
    "ComfyUI_experiments": ("comfyanonymous+ComfyUI_experiments", "HEAD"),
}
Link = list[Any]
# Loom's own test pack with a DIFFUSION_MODEL wrapper (no real pack among these uses that kind): it
# scales the UNet's prediction and appends a description of its call arguments to RECORD's file.
FIXTURE = "PatchDiffusionModel (test pack)"
FIXTURE_PACK = Path(__file__).resolve().parents[1] / "tests" / "packs" / "diffusion_model_pack"
RECORD = "@RECORD@"
# The output blocks' transformer weights (ComfyUI's state-dict names), scaled by FluxBlocksBuster+.
BUSTED_BLOCKS = r"output_blocks\.[3-5]\.1\.=1.2"


def _patch(class_type: str, **inputs: Any) -> dict[str, Any]:
    return {"patch": {"class_type": class_type, "inputs": {**inputs, "model": ["ckpt", 0]}}}


def _grey(size: int) -> dict[str, Any]:
    """A mid-grey image's latent, as node "encoded"."""
    return {
        "image": {"class_type": "EmptyImage", "inputs": {"width": size, "height": size, "batch_size": 1,
                                                           "color": 0x808080}},
        "encoded": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["ckpt", 2]}},
    }  # fmt: skip


def _differential(size: int) -> dict[str, Any]:
    """DifferentialDiffusionAdvanced on a grey image's latent with a left-to-right gradient mask."""
    return {
        **_grey(size),
        "mask": {"class_type": "CreateGradientMask",
                 "inputs": {"invert": False, "frames": 1, "width": size, "height": size}},
        "patch": {"class_type": "DifferentialDiffusionAdvanced",
                  "inputs": {"model": ["ckpt", 0], "samples": ["encoded", 0], "mask": ["mask", 0],
                             "multiplier": 1.0}},
    }  # fmt: skip


def _reference(size: int) -> dict[str, Any]:
    """ReferenceOnlySimple with a grey image's latent as the reference; its latent holds both."""
    return {
        **_grey(size),
        "patch": {"class_type": "ReferenceOnlySimple",
                  "inputs": {"model": ["ckpt", 0], "reference": ["encoded", 0], "batch_size": 1}},
    }  # fmt: skip


def _guidance(class_type: str, block: str, number: int, **inputs: Any) -> dict[str, Any]:
    """One of sd-perturbed-attention's guidance nodes at one UNet block, over the whole schedule."""
    return _patch(
        class_type, scale=3.0, unet_block=block, unet_block_id=number, sigma_start=-1.0, sigma_end=-1.0,
        rescale=0.0, rescale_mode="full", unet_block_list="", **inputs,
    )  # fmt: skip


# name -> (extra nodes, MODEL link, LATENT link or None for an empty latent, denoise, batch entry
# to decode or None for all)
Case = tuple[dict[str, Any], Link, Link | None, float, int | None]


def cases(size: int) -> dict[str, Case]:
    return {
        "none": ({}, ["ckpt", 0], None, 1.0, None),
        "GuidanceTimestepping+": (
            _patch("GuidanceTimestepping+", value=2.0, start_at=0.2, end_at=0.8),
            ["patch", 0], None, 1.0, None,
        ),
        "CFGZeroStarAndInit": (
            _patch("CFGZeroStarAndInit", use_zero_init=True, zero_init_steps=0),
            ["patch", 0], None, 1.0, None,
        ),
        "DifferentialDiffusionAdvanced": (_differential(size), ["patch", 0], ["patch", 1], 0.8, None),
        "FluxBlocksBuster+": (
            _patch("FluxBlocksBuster+", blocks=BUSTED_BLOCKS), ["patch", 0], None, 1.0, None,
        ),
        "PerturbedAttention": (
            _guidance("PerturbedAttention", "middle", 0, adaptive_scale=0.0), ["patch", 0], None, 1.0, None,
        ),
        "ModelSamplerTonemapNoiseTest": (
            _patch("ModelSamplerTonemapNoiseTest", multiplier=0.5), ["patch", 0], None, 1.0, None,
        ),
        "ReferenceOnlySimple": (_reference(size), ["patch", 0], ["patch", 1], 1.0, 1),
        FIXTURE: (
            _patch("PatchDiffusionModel", scale=0.8, record=RECORD), ["patch", 0], None, 1.0, None,
        ),
    }  # fmt: skip


def workflow(ckpt: str, case: Case, seed: int, size: int, steps: int) -> dict[str, Any]:
    extra, model, latent, denoise, entry = case
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
    if entry is not None:  # decode one entry of the sampled batch
        pick = {"samples": ["sample", 0], "batch_index": entry, "length": 1}
        prompt["pick"] = {"class_type": "LatentFromBatch", "inputs": pick}
        prompt["decode"]["inputs"]["samples"] = ["pick", 0]
    return {**prompt, **extra}


def run_side(
    side: str, port: int, config: Path, work: Path, deps: str, prompts: dict[str, dict[str, Any]]
) -> dict[str, np.ndarray | str]:
    images: dict[str, np.ndarray | str] = {}
    record = str(work / f"{side}-diffusion-model-calls.jsonl")
    with server(side, port, config, work, deps):
        for name, template in prompts.items():
            prompt = json.loads(json.dumps(template).replace(RECORD, record))
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


def compare_calls(work: Path) -> bool:
    """Whether the DIFFUSION_MODEL wrapper saw the same arguments (shapes, dtypes, keys) on both."""
    found = {}
    for side in ("comfy", "loom"):
        path = work / f"{side}-diffusion-model-calls.jsonl"
        found[side] = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    same = bool(found["comfy"]) and found["comfy"] == found["loom"]
    print(f"DIFFUSION_MODEL wrapper calls: ComfyUI {len(found['comfy'])}, Loom {len(found['loom'])}, "
          f"{'the same arguments' if same else 'DIFFERENT'}")  # fmt: skip
    for comfy_call, loom_call in zip(found["comfy"][:1], found["loom"][:1], strict=False):
        print(
            f"  ComfyUI first call: {json.dumps(comfy_call)}\n  Loom first call:    {json.dumps(loom_call)}"
        )
    return same


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt-dir", type=Path, default=Path("/tmp/benchmodels"))
    parser.add_argument("--ckpt", default="comfy_sd15.safetensors")
    parser.add_argument("--deps", default="/tmp/packdeps", help="the packs' requirements (pip --target)")
    parser.add_argument("--comfy-port", type=int, default=19120)
    parser.add_argument("--loom-port", type=int, default=19121)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--keep", action="store_true", help="keep packs, logs and images")
    parser.add_argument("--only", nargs="*", default=[], help="run only these patch nodes (and 'none')")
    args = parser.parse_args()
    with temp_work("loom-pack-patch-", args.keep) as scratch:
        work = Path(scratch)
        custom = work / "custom_nodes"
        for name, (mirror, rev) in PACKS.items():
            extract(MIRRORS / mirror / "repo", custom / name, rev)
        shutil.copytree(
            FIXTURE_PACK, custom / FIXTURE_PACK.name, ignore=shutil.ignore_patterns("__pycache__")
        )
        config = write_paths_config(work, args.ckpt_dir, custom)
        prompts = {
            name: workflow(args.ckpt, case, args.seed, args.size, args.steps)
            for name, case in cases(args.size).items()
            if not args.only or name == "none" or name in args.only
        }
        comfy = run_side("comfy", args.comfy_port, config, work, args.deps, prompts)
        loom = run_side("loom", args.loom_port, config, work, args.deps, prompts)
        note = f"{args.size}x{args.size}, {args.steps} euler steps, seed {args.seed}"
        passed = report(comfy, loom, note)
        if FIXTURE in prompts:
            passed -= not compare_calls(work)
        if args.keep:
            print(f"kept in {work}", file=sys.stderr)
    return 0 if passed == len(prompts) else 1


if __name__ == "__main__":
    sys.exit(main())
