"""Same-seed parity of Loom and a CPU ComfyUI on a tiny SD3.5 stand-in and shallow full-width Flux.1 dev
and Chroma (PSNR of the sampled latents).

Both engines load the same diffusion-model files (ComfyUI's key layout, written here), get the same
conditioning tensors (ComfyUI builds its text encoders at full size, so tiny ones cannot be compared) and
sample the same seed with ComfyUI's sampler and scheduler names. ComfyUI runs in its own venv through its
Python API (`comfy.sd.load_diffusion_model`, `comfy.sample.sample`). ComfyUI 0.3.64 builds Flux, Chroma
and Qwen-Image at their released widths whatever the file holds (`comfy/model_detection.py`: hidden 3072,
24 heads, context 4096 for Flux and Chroma, 3584 for Qwen-Image; Chroma's approximator 5 layers 5120
wide), so those stand-ins have the released widths with one double and one single block (Qwen-Image: one
block; about 0.4–0.6 B parameters, 0.8–1.2 GB in bf16; each engine holds one in fp32 at a time, one
engine after the other); `--lock /tmp/comfy.lock` runs the ComfyUI part under that
flock. Flux gets a 4096-wide T5-style context, a 768-wide pooled CLIP-L-style vector and FluxGuidance's
`guidance` 3.5 (cfg 1, as Flux dev is run); Chroma a 4096-wide context alone, cfg 4, once also with
FluxGuidance 3.5 (ComfyUI embeds it in Chroma's approximator); Qwen-Image a 3584-wide context alone, cfg
2.5, with its default sampling (no ModelSamplingAuraFlow). `--families sd3` skips the big ones.

    OMP_NUM_THREADS=1 .venv/bin/python bench/families_parity.py [--comfy /tmp/comfy] [--lock FILE]
        [--families sd3,flux,chroma,qwen_image]

Prints a table (family, sampler, scheduler, PSNR in dB, max |difference|) and a one-line summary.
"""

from __future__ import annotations

import argparse
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
# Before diffusers: keeps a CUDA-built torchvision importable (engine/torchvision_compat.py).
from comfy_client import COMFY_DRIVER_HEAD  # noqa: E402  (bench/comfy_client.py)

import engine  # noqa: E402, F401

FLUX_GUIDANCE = 3.5
# (family, sampler, scheduler, FluxGuidance on the positive conditioning or None)
CASES: list[tuple[str, str, str, float | None]] = [
    ("sd3", "euler", "simple", None),
    ("sd3", "dpmpp_2m", "sgm_uniform", None),
    ("sd3", "heun", "normal", None),
    ("sd3", "uni_pc", "beta", None),
    ("sd3", "euler_ancestral", "simple", None),
    ("sd3", "dpmpp_2s_ancestral", "normal", None),
    ("sd3", "lcm", "simple", None),
    ("sd3", "dpmpp_2m_sde", "karras", None),
    ("flux", "euler", "simple", FLUX_GUIDANCE),
    ("flux", "dpmpp_2m", "beta", FLUX_GUIDANCE),
    ("flux", "heun", "normal", FLUX_GUIDANCE),
    ("flux", "euler_ancestral", "sgm_uniform", FLUX_GUIDANCE),
    ("chroma", "euler", "simple", None),
    ("chroma", "dpmpp_2m", "beta", None),
    ("chroma", "heun", "normal", None),
    ("chroma", "euler_ancestral", "sgm_uniform", None),
    ("chroma", "euler", "beta", 3.5),  # FluxGuidance on Chroma's positive conditioning
    ("qwen_image", "euler", "simple", None),
    ("qwen_image", "dpmpp_2m", "beta", None),
    ("qwen_image", "heun", "normal", None),
    ("qwen_image", "euler_ancestral", "sgm_uniform", None),
]
STEPS, SEED, SIZE = 6, 42, 64
CFG = {"sd3": 4.5, "flux": 1.0, "chroma": 4.0, "qwen_image": 2.5}
# Conditioning: (context width, pooled width or None). SD3 and Flux take a pooled vector; Chroma not: its
# text encoder gives `pooled_output` None (which ComfyUI's Flux-derived model still looks up), nor does
# Qwen-Image's. Unset guidance is 3.5 for Flux and 0 for Chroma in both engines; the negative conditioning
# never sets it.
CONDITIONING = {"sd3": (192, 192), "flux": (4096, 768), "chroma": (4096, None), "qwen_image": (3584, None)}
# The families ComfyUI builds at their released widths: written shallow by `write_shallow`.
SHALLOW = ("flux", "chroma", "qwen_image")

DRIVER = (
    COMFY_DRIVER_HEAD
    + """import comfy.sd, comfy.sample
from safetensors.torch import load_file, save_file
out = {}
loaded, model = None, None
for case in args["cases"]:
    family, sampler, scheduler, guidance = case
    if family != loaded:  # one model alive at a time: the full-width ones are GBs in fp32
        model = None
        model, loaded = comfy.sd.load_diffusion_model(args["files"][family]), family
    cond = load_file(args["conds"][family])
    pooled = cond.get("pooled")
    extra = {"pooled_output": pooled} if guidance is None else {"pooled_output": pooled, "guidance": guidance}
    zeros = {"pooled_output": None if pooled is None else torch.zeros_like(pooled)}
    positive = [[cond["context"], extra]]
    negative = [[torch.zeros_like(cond["context"]), zeros]]
    latent = torch.zeros([1, 16, args["size"] // 8, args["size"] // 8])
    if family == "qwen_image":  # a video-shaped latent there (Wan21 format: one frame), as KSampler makes it
        latent = latent.unsqueeze(2)
    noise = comfy.sample.prepare_noise(latent, args["seed"])
    samples = comfy.sample.sample(model, noise, args["steps"], args["cfg"][family], sampler, scheduler,
                                  positive, negative, latent, seed=args["seed"], disable_pbar=True)
    out["/".join(map(str, case))] = samples.reshape(1, 16, args["size"] // 8, -1).float().contiguous()
save_file(out, args["result"])
"""
)


def write_models(folder: Path, families: set[str]) -> tuple[dict[str, str], dict[str, str]]:
    from tests.nodes.flow_fixtures import sd3_to_comfy, tiny_sd3_transformer

    files: dict[str, str] = {}
    if "sd3" in families:
        sd3 = tiny_sd3_transformer(seed=1, qk_norm=True, heads=2)
        files["sd3"] = str(folder / "tiny_sd3.safetensors")
        save_file({k: v.contiguous() for k, v in sd3_to_comfy(sd3.state_dict(), 2).items()}, files["sd3"])
    for family in SHALLOW:
        if family in families:
            files[family] = str(folder / f"shallow_{family}.safetensors")
            write_shallow(family, Path(files[family]))
    generator = torch.Generator().manual_seed(7)
    conds = {}
    for family, (context_width, pooled_width) in CONDITIONING.items():
        tensors = {"context": torch.randn(1, 12, context_width, generator=generator)}
        if pooled_width is not None:
            tensors["pooled"] = torch.randn(1, pooled_width, generator=generator)
        conds[family] = str(folder / f"cond_{family}.safetensors")
        save_file(tensors, conds[family])
    return files, conds


def write_shallow(family: str, path: Path) -> None:
    """Flux.1 dev or Chroma at ComfyUI's fixed widths with one double and one single block, or Qwen-Image
    with one block, random bf16 weights (the shapes come from diffusers' model built on the meta device with
    its released defaults, renamed to the reference layout; Qwen-Image's file uses diffusers' names)."""
    from accelerate import init_empty_weights
    from diffusers import ChromaTransformer2DModel, FluxTransformer2DModel, QwenImageTransformer2DModel

    from tests.nodes.flow_fixtures import flux_to_comfy
    from tests.nodes.flow_fixtures_new import chroma_to_comfy

    with init_empty_weights():
        if family == "flux":
            meta = FluxTransformer2DModel(num_layers=1, num_single_layers=1, guidance_embeds=True)
            named = flux_to_comfy(meta.state_dict(), 1, 1)
        elif family == "chroma":
            meta = ChromaTransformer2DModel(num_layers=1, num_single_layers=1)
            named = chroma_to_comfy(meta.state_dict(), 1, 1)
        else:
            named = QwenImageTransformer2DModel(num_layers=1).state_dict()
    generator = torch.Generator().manual_seed(11)
    state = {}
    for key, value in named.items():
        norm_weight = value.ndim == 1 and "norm" in key and key.endswith(".weight")
        if key.endswith(".scale") or norm_weight:  # RMS norm scales around 1
            tensor = 1 + 0.1 * torch.randn(value.shape, generator=generator)
        elif value.ndim == 2:
            tensor = torch.randn(value.shape, generator=generator) / math.sqrt(value.shape[1])
        else:
            tensor = 0.02 * torch.randn(value.shape, generator=generator)
        state[key] = tensor.to(torch.bfloat16)
    save_file(state, str(path))


def run_loom(
    files: dict[str, str], conds: dict[str, str], cases: list[tuple[str, str, str, float | None]]
) -> dict[str, torch.Tensor]:
    from engine.diffusion.guider import CFGGuider
    from engine.models.flow_families import load_diffusion_model
    from engine.sampling import prepare_noise, sigmas_for

    out = {}
    loaded, model = None, None
    for family, sampler, scheduler, guidance in cases:
        if family != loaded:  # one model alive at a time: the full-width ones are GBs in fp32
            model = None
            model, loaded = load_diffusion_model(Path(files[family])), family
        cond = load_file(conds[family])
        pooled = cond.get("pooled")
        extra: dict[str, Any] = {"pooled_output": pooled}
        if guidance is not None:
            extra["guidance"] = guidance
        zeros = {"pooled_output": None if pooled is None else torch.zeros_like(pooled)}
        positive = [[cond["context"], extra]]
        negative = [[torch.zeros_like(cond["context"]), zeros]]
        latent = torch.zeros([1, 16, SIZE // 8, SIZE // 8])
        noise = prepare_noise(latent, SEED, None)
        sigmas = sigmas_for(model.get_model_object("model_sampling"), scheduler, STEPS, 1.0, sampler)
        guider = CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(CFG[family])
        out[f"{family}/{sampler}/{scheduler}/{guidance}"] = guider.sample(
            noise, latent, sampler, sigmas, seed=SEED
        ).float()
    return out


def run_comfy(
    comfy: Path,
    files: dict[str, str],
    conds: dict[str, str],
    result: Path,
    cases: list[tuple[str, str, str, float | None]],
    lock: Path | None,
) -> dict[str, torch.Tensor]:
    args = {
        "comfy_root": str(comfy / "ComfyUI"), "files": files, "conds": conds, "cases": cases, "size": SIZE,
        "seed": SEED, "steps": STEPS, "cfg": CFG, "result": str(result),
    }  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
    if lock is not None:  # machines that share one ComfyUI among benches take turns
        command = ["flock", str(lock), *command]
    subprocess.run(command, check=True, env=env, cwd=str(comfy / "ComfyUI"), stdout=subprocess.DEVNULL)
    return load_file(str(result))


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    mse = float(((reference - other) ** 2).mean())
    span = float(reference.max() - reference.min())
    return math.inf if mse == 0 else 20 * math.log10(span / math.sqrt(mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--comfy", type=Path, default=Path("/tmp/comfy"), help="ComfyUI checkout + venv (setup.sh)"
    )
    parser.add_argument(
        "--families",
        default="sd3,flux,chroma,qwen_image",
        help="comma-separated: sd3, flux, chroma, qwen_image",
    )
    parser.add_argument(
        "--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs (not Loom)"
    )
    options = parser.parse_args()
    families = set(options.families.split(","))
    cases = [case for case in CASES if case[0] in families]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files, conds = write_models(folder, families)
        loom = run_loom(files, conds, cases)
        comfy = run_comfy(options.comfy, files, conds, folder / "comfy.safetensors", cases, options.lock)
    header = (
        f"{'family':<10} {'sampler':<20} {'scheduler':<12} {'guidance':>8} {'PSNR dB':>8} {'max |diff|':>11}"
    )
    print(header)
    scores = []
    for key in loom:
        family, sampler, scheduler, guidance = key.split("/")
        score = psnr(comfy[key], loom[key])
        scores.append(score)
        diff = float((comfy[key] - loom[key]).abs().max())
        shown = "-" if guidance == "None" else guidance
        print(f"{family:<10} {sampler:<20} {scheduler:<12} {shown:>8} {score:>8.1f} {diff:>11.2e}")
    passing = sum(s >= 30 for s in scores)
    print(f"summary: {passing}/{len(scores)} cases at PSNR >= 30 dB; worst {min(scores):.1f} dB")


if __name__ == "__main__":
    main()
