"""Same-seed parity of Loom and a CPU ComfyUI 0.3.64 on a shallow full-width Chroma Radiance (PSNR of the
sampled images in −1..1, which for this pixel-space model are the latents).

ComfyUI 0.3.64 builds Chroma Radiance at its released widths whatever the file holds
(`comfy/model_detection.py`: hidden 3072, 24 heads, context 4096, approximator 5 layers 5120 wide, pixel
decoder 64 wide, ratio 4, depth 4, 8 frequencies), so the file written here has those widths with one
double and one single block (random bf16 weights, about 1.24 B parameters) and the current 3×3
convolution final layer (`--head linear`: the older Linear one). Both engines get the same 4096-wide
context (a random stand-in for T5's), cfg 4 (once also with FluxGuidance 3.5 on the positive
conditioning), the same seed and ComfyUI's sampler and scheduler names; ComfyUI runs through its Python
API in its own venv, under `--lock` when given.

At 128×128 (64 patches) ComfyUI 0.3.64 would decode the pixels in tiles of 32 patches, and its tiling
mixes up the rows of a batch larger than one (cond and uncond are one batch): that case runs ComfyUI
with ChromaRadianceOptions' effect (`nerf_tile_size` 0, no tiling) while Loom keeps its default tiles of
32 — tiling does not change Loom's result. ComfyUI 0.3.64 has no x0 variant, so only the plain model
is compared.

    OMP_NUM_THREADS=1 .venv/bin/python bench/radiance_parity.py [--comfy /tmp/comfy] [--lock FILE]
        [--head conv|linear]

Prints a table (size, sampler, scheduler, guidance, PSNR in dB, max |difference|) and a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from comfy_client import COMFY_DRIVER_HEAD  # noqa: E402  (bench/comfy_client.py)

import engine  # noqa: E402, F401  (before diffusers: torchvision shim)
from bench.families_parity import psnr  # noqa: E402

# (size, sampler, scheduler, FluxGuidance on the positive conditioning or None)
CASES: list[tuple[int, str, str, float | None]] = [
    (64, "euler", "simple", None),
    (64, "dpmpp_2m", "beta", None),
    (64, "euler", "beta", 3.5),
    (128, "euler_ancestral", "simple", None),
]
STEPS, SEED, CFG = 6, 42, 4.0

DRIVER = (
    COMFY_DRIVER_HEAD
    + """import comfy.sd, comfy.sample
from safetensors.torch import load_file, save_file
model = comfy.sd.load_diffusion_model(args["file"])
# No tiling of the pixel decoder (0.3.64's tiles mix up the rows of a batch of two, cond and uncond).
model.model_options.setdefault("transformer_options", {})["chroma_radiance_options"] = {"nerf_tile_size": 0}
cond = load_file(args["cond"])
out = {}
for size, sampler, scheduler, guidance in args["cases"]:
    extra = {"pooled_output": None} if guidance is None else {"pooled_output": None, "guidance": guidance}
    positive = [[cond["context"], extra]]
    negative = [[torch.zeros_like(cond["context"]), {"pooled_output": None}]]
    latent = torch.zeros([1, 3, size, size])
    noise = comfy.sample.prepare_noise(latent, args["seed"])
    samples = comfy.sample.sample(model, noise, args["steps"], args["cfg"], sampler, scheduler,
                                  positive, negative, latent, seed=args["seed"], disable_pbar=True)
    out["/".join(map(str, [size, sampler, scheduler, guidance]))] = samples.float().contiguous()
save_file(out, args["result"])
"""
)


def released_shapes(head: str) -> dict[str, tuple[int, ...]]:
    """The reference-layout shapes of a Chroma Radiance with one double and one single block."""
    from accelerate import init_empty_weights
    from diffusers import ChromaTransformer2DModel

    from tests.nodes.flow_fixtures_new import chroma_to_comfy

    with init_empty_weights():
        meta = ChromaTransformer2DModel(num_layers=1, num_single_layers=1)
    shapes = {
        k: tuple(v.shape)
        for k, v in chroma_to_comfy(meta.state_dict(), 1, 1).items()
        if not k.startswith(("img_in.", "final_layer."))
    }
    width, inner, hidden = 64, 256, 3072
    shapes |= {
        "img_in_patch.weight": (hidden, 3, 16, 16),
        "img_in_patch.bias": (hidden,),
        "nerf_image_embedder.embedder.0.weight": (width, 3 + 64),
        "nerf_image_embedder.embedder.0.bias": (width,),
    }
    for i in range(4):
        shapes[f"nerf_blocks.{i}.param_generator.weight"] = (3 * width * inner, hidden)
        shapes[f"nerf_blocks.{i}.param_generator.bias"] = (3 * width * inner,)
        shapes[f"nerf_blocks.{i}.norm.scale"] = (width,)
    if head == "conv":
        shapes |= {
            "nerf_final_layer_conv.norm.scale": (width,),
            "nerf_final_layer_conv.conv.weight": (3, width, 3, 3),
            "nerf_final_layer_conv.conv.bias": (3,),
        }
    else:
        shapes |= {
            "nerf_final_layer.norm.scale": (width,),
            "nerf_final_layer.linear.weight": (3, width),
            "nerf_final_layer.linear.bias": (3,),
        }
    return shapes


def write_model(path: Path, head: str) -> None:
    """Random bf16 weights: norm scales around 1, matrices and convolutions scaled by their fan-in."""
    generator = torch.Generator().manual_seed(11)
    state = {}
    for key, shape in released_shapes(head).items():
        norm_weight = len(shape) == 1 and "norm" in key and key.endswith(".weight")
        if key.endswith(".scale") or norm_weight:
            tensor = 1 + 0.1 * torch.randn(shape, generator=generator)
        elif len(shape) >= 2:
            tensor = torch.randn(shape, generator=generator) / math.sqrt(math.prod(shape[1:]))
        else:
            tensor = 0.02 * torch.randn(shape, generator=generator)
        state[key] = tensor.to(torch.bfloat16)
    save_file(state, str(path))


def run_loom(file: Path, cond_file: Path, cases: list[tuple[int, str, str, float | None]]) -> dict[str, Any]:
    from engine.diffusion.guider import CFGGuider
    from engine.models.flow_families import load_diffusion_model
    from engine.sampling import prepare_noise, sigmas_for

    model = load_diffusion_model(file)
    context = load_file(str(cond_file))["context"]
    out = {}
    for size, sampler, scheduler, guidance in cases:
        extra: dict[str, Any] = {"pooled_output": None}
        if guidance is not None:
            extra["guidance"] = guidance
        latent = torch.zeros([1, 3, size, size])
        noise = prepare_noise(latent, SEED, None)
        sigmas = sigmas_for(model.get_model_object("model_sampling"), scheduler, STEPS, 1.0, sampler)
        guider = CFGGuider(model)
        guider.set_conds([[context, extra]], [[torch.zeros_like(context), {"pooled_output": None}]])
        guider.set_cfg(CFG)
        key = f"{size}/{sampler}/{scheduler}/{guidance}"
        out[key] = guider.sample(noise, latent, sampler, sigmas, seed=SEED).float()
    return out


def release_memory() -> None:
    """Give the freed memory of writing the file back to the system before ComfyUI loads it."""
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def run_comfy(
    comfy: Path, file: Path, cond: Path, result: Path, cases: list[Any], lock: Path | None
) -> dict[str, torch.Tensor]:
    args = {
        "comfy_root": str(comfy / "ComfyUI"), "file": str(file), "cond": str(cond), "cases": cases,
        "seed": SEED, "steps": STEPS, "cfg": CFG, "result": str(result),
    }  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
    if lock is not None:
        command = ["flock", str(lock), *command]
    subprocess.run(command, check=True, env=env, cwd=str(comfy / "ComfyUI"), stdout=subprocess.DEVNULL)
    return load_file(str(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"), help="ComfyUI checkout + venv")
    parser.add_argument("--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs")
    parser.add_argument("--head", choices=("conv", "linear"), default="conv", help="the final layer")
    options = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        file, cond = folder / "shallow_chroma_radiance.safetensors", folder / "cond.safetensors"
        write_model(file, options.head)
        generator = torch.Generator().manual_seed(7)
        save_file({"context": torch.randn(1, 12, 4096, generator=generator)}, str(cond))
        release_memory()
        # ComfyUI first: each engine holds the ~1 B-parameter model in fp32, never both at once.
        comfy = run_comfy(options.comfy, file, cond, folder / "comfy.safetensors", CASES, options.lock)
        loom = run_loom(file, cond, CASES)
    print(f"{'size':>4} {'sampler':<16} {'scheduler':<12} {'guidance':>8} {'PSNR dB':>8} {'max |diff|':>11}")
    scores = []
    for key, ours in loom.items():
        size, sampler, scheduler, guidance = key.split("/")
        score = psnr(comfy[key], ours)
        scores.append(score)
        diff = float((comfy[key] - ours).abs().max())
        shown = "-" if guidance == "None" else guidance
        print(f"{size:>4} {sampler:<16} {scheduler:<12} {shown:>8} {score:>8.1f} {diff:>11.2e}")
    passing = sum(s >= 30 for s in scores)
    worst = min(scores)
    print(
        f"summary ({options.head} head): {passing}/{len(scores)} cases at PSNR >= 30 dB; worst {worst:.1f} dB"
    )


if __name__ == "__main__":
    main()
