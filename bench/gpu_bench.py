"""Sampling speed on a GPU: Loom beside diffusers' pipeline and ComfyUI, same weights, it/s.

For each model (SD1.5 at 512², SDXL at 1024²) a random-weight checkpoint of the real architecture is
written once as fp16 in the original layout (nothing is downloaded), then three worker processes run
Euler for `--steps` steps, CFG 7, batch 1, one after another, each with a warm-up run first:

- Loom: its executor on CheckpointLoaderSimple → CLIPTextEncode ×2 → EmptyLatentImage → KSampler, the
  seed changed per run so only KSampler runs (Loom's defaults on CUDA: fp16 UNet, SDPA attention; add
  `--compile` to time Loom with torch.compile);
- diffusers: `StableDiffusionPipeline` / `StableDiffusionXLPipeline` built from the same modules in
  fp16, `output_type="latent"` (no decode), prompts encoded beforehand;
- ComfyUI: its own nodes in process (`common_ksampler`), on its default CUDA settings.

it/s = steps / sampling seconds (median of `--runs`). Run on a CUDA machine with ComfyUI beside Loom:
`python bench/gpu_bench.py [--models sd15 sdxl] [--steps 20] [--runs 3] [--comfy /path/to/comfy]`
(`--comfy` is a folder holding `ComfyUI/` and its `venv/`; without it ComfyUI is skipped).
`--device cpu --models sd15 --size 64 --steps 2 --sd15-checkpoint FILE` checks the script itself on a
CPU machine (FILE: e.g. bench/make_comfy_sd15.py's smaller SD1.5-layout file).
Not part of `make bench`; never run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SIZES = {"sd15": 512, "sdxl": 1024}
PROMPTS = ("a photograph of a red fox in the snow", "blurry")

_MAKE = """
import sys, torch
sys.path.insert(0, {root!r})
import engine  # before diffusers: keeps a CUDA-less torchvision importable
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection
from engine.models.save import save_single_file

def clip(width, layers, heads, act, pad, projection=False):
    config = CLIPTextConfig(vocab_size=49408, hidden_size=width, intermediate_size=4 * width,
        num_hidden_layers=layers, num_attention_heads=heads, max_position_embeddings=77, hidden_act=act,
        projection_dim=width, bos_token_id=49406, eos_token_id=49407, pad_token_id=pad)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)

with init_empty_weights():
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        scaling_factor={scaling})
    if {family!r} == "sd1":
        unet = UNet2DConditionModel(cross_attention_dim=768, attention_head_dim=8)
        texts = [clip(768, 12, 12, "quick_gelu", 49407)]
    else:
        unet = UNet2DConditionModel(block_out_channels=[320, 640, 1280], layers_per_block=2,
            down_block_types=["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            transformer_layers_per_block=[1, 2, 10], attention_head_dim=[5, 10, 20], cross_attention_dim=2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816)
        texts = [clip(768, 12, 12, "quick_gelu", 49407), clip(1280, 32, 20, "gelu", 0, projection=True)]
gen = torch.Generator().manual_seed(0)
for model in (unet, vae, *texts):
    model.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim == 1:
                p.fill_(1.0 if "norm" in name and name.endswith("weight") else 0.0)
            else:
                p.normal_(0, 0.02, generator=gen)
        for name, b in model.named_buffers():
            if "position_ids" in name:
                b.copy_(torch.arange(b.shape[-1]).expand_as(b))
save_single_file({path!r}, unet, vae, texts, {family!r}, dtype=torch.float16)
"""

_LOOM = """
import json, statistics, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})
import torch
from engine import folders
from engine.diffusion import devices
from engine.executor import Executor
from engine.graph import validate_prompt
from nodes import builtin_registry
devices.configure(force_cpu={device!r} == "cpu")
devices.manager().compile_unet = {compile}
ckpt = Path({path!r})
configured = folders.Folders.under(Path(tempfile.mkdtemp()))
configured.models["checkpoints"] = [ckpt.parent]
folders.configure(configured)
registry = builtin_registry()
executor = Executor(registry)

def prompt(seed):
    return {{
        "1": {{"class_type": "CheckpointLoaderSimple", "inputs": {{"ckpt_name": ckpt.name}}}},
        "2": {{"class_type": "EmptyLatentImage",
            "inputs": {{"width": {size}, "height": {size}, "batch_size": 1}}}},
        "3": {{"class_type": "CLIPTextEncode", "inputs": {{"text": {pos!r}, "clip": ["1", 1]}}}},
        "4": {{"class_type": "CLIPTextEncode", "inputs": {{"text": {neg!r}, "clip": ["1", 1]}}}},
        "5": {{"class_type": "KSampler", "inputs": {{"seed": seed, "steps": {steps}, "cfg": 7.0,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["2", 0]}}}},
        "6": {{"class_type": "PreviewAny", "inputs": {{"source": ["5", 0]}}}},
    }}

def sampling_seconds(seed):
    marks = {{}}
    def listen(event, data):
        if event == "executing":
            marks[data["node"]] = time.perf_counter()
    checked = validate_prompt(registry, prompt(seed))
    result = executor.execute(checked.prompt, "gpu-bench", checked.outputs, listener=listen)
    assert result.status == "success", result.error
    if {device!r} == "cuda":
        torch.cuda.synchronize()
    return marks["6"] - marks["5"]

sampling_seconds(0)
times = [sampling_seconds(seed) for seed in range(1, {runs} + 1)]
print(json.dumps({{"seconds": times}}))
"""

_DIFFUSERS = """
import json, sys, time
sys.path.insert(0, {root!r})
import torch
import engine  # before diffusers: keeps a CUDA-less torchvision importable
from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline
from engine.models.checkpoint import load_checkpoint
from engine.models.tokenizer import get_clip_tokenizer
dtype = torch.float16 if {device!r} == "cuda" else torch.float32
loaded = load_checkpoint({path!r}, dtype=dtype)
scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
    timestep_spacing="leading", steps_offset=1)
tokenizer = get_clip_tokenizer()
if loaded.family == "sd1":
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=loaded.text_encoders[0], tokenizer=tokenizer,
        unet=loaded.unet, scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
else:
    tokenizer_2 = get_clip_tokenizer()
    tokenizer_2.pad_token = "!"  # open_clip pads with id 0
    pipe = StableDiffusionXLPipeline(vae=loaded.vae, text_encoder=loaded.text_encoders[0],
        text_encoder_2=loaded.text_encoders[1], tokenizer=tokenizer, tokenizer_2=tokenizer_2,
        unet=loaded.unet, scheduler=scheduler)
pipe = pipe.to({device!r}, dtype)
pipe.set_progress_bar_config(disable=True)
with torch.no_grad():
    embeds = pipe.encode_prompt({pos!r}, {device!r}, 1, True, {neg!r})

def sampling_seconds(seed):
    kwargs = dict(prompt_embeds=embeds[0], negative_prompt_embeds=embeds[1])
    if len(embeds) == 4:
        kwargs.update(pooled_prompt_embeds=embeds[2], negative_pooled_prompt_embeds=embeds[3])
    generator = torch.Generator({device!r}).manual_seed(seed)
    if {device!r} == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    pipe(num_inference_steps={steps}, guidance_scale=7.0, height={size}, width={size}, generator=generator,
        output_type="latent", **kwargs)
    if {device!r} == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start

sampling_seconds(0)
times = [sampling_seconds(seed) for seed in range(1, {runs} + 1)]
print(json.dumps({{"seconds": times}}))
"""

_COMFY = """
import json, sys, time
sys.path.insert(0, {comfy!r})
sys.argv = [sys.argv[0]] + (["--cpu"] if {device!r} == "cpu" else [])
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.sd, nodes
model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config({path!r}, output_vae=True, output_clip=True,
    embedding_directory=None)
with torch.inference_mode():
    positive = nodes.CLIPTextEncode().encode(clip, {pos!r})[0]
    negative = nodes.CLIPTextEncode().encode(clip, {neg!r})[0]
latent = nodes.EmptyLatentImage().generate({size}, {size}, 1)[0]

@torch.inference_mode()
def sampling_seconds(seed):
    start = time.perf_counter()
    samples = nodes.common_ksampler(
        model, seed, {steps}, 7.0, "euler", "normal", positive, negative, latent)[0]
    samples["samples"].sum().item()  # waits for the device
    return time.perf_counter() - start

sampling_seconds(0)
times = [sampling_seconds(seed) for seed in range(1, {runs} + 1)]
print(json.dumps({{"seconds": times}}))
"""


def _run(python: str, code: str, cwd: Path) -> dict[str, Any]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    done = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def checkpoint(model: str, folder: Path) -> Path:
    """The random-weight fp16 checkpoint of `model`, written once."""
    path = folder / f"gpu_bench_{model}.safetensors"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        family, scaling = ("sd1", 0.18215) if model == "sd15" else ("sdxl", 0.13025)
        print(f"writing {path} ...", flush=True)
        _run(
            sys.executable, _MAKE.format(root=str(ROOT), path=str(path), family=family, scaling=scaling), ROOT
        )
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=sorted(SIZES), default=["sd15", "sdxl"])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--size", type=int, default=None, help="override every model's image side")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--compile", action="store_true", help="Loom with --compile")
    parser.add_argument("--comfy", type=Path, default=None, help="folder with ComfyUI/ and venv/")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/loom_gpu_bench"))
    parser.add_argument("--sd15-checkpoint", type=Path, default=None, help="use this SD1.5 file instead")
    args = parser.parse_args()
    rows = []
    for model in args.models:
        size = args.size or SIZES[model]
        path = (
            args.sd15_checkpoint
            if model == "sd15" and args.sd15_checkpoint
            else checkpoint(model, args.folder)
        )
        fill = dict(
            root=str(ROOT),
            path=str(path),
            size=size,
            steps=args.steps,
            runs=args.runs,
            device=args.device,
            pos=PROMPTS[0],
            neg=PROMPTS[1],
        )
        engines: dict[str, tuple[str, str, Path]] = {
            "Loom": (sys.executable, _LOOM.format(compile=args.compile, **fill), ROOT),
            "diffusers": (sys.executable, _DIFFUSERS.format(**fill), ROOT),
        }
        if args.comfy is not None:
            source = args.comfy / "ComfyUI"
            engines["ComfyUI"] = (
                str(args.comfy / "venv" / "bin" / "python"),
                _COMFY.format(comfy=str(source), **fill),
                source,
            )
        speeds = {}
        for name, (python, code, cwd) in engines.items():
            seconds = statistics.median(_run(python, code, cwd)["seconds"])
            speeds[name] = args.steps / seconds
            print(f"{model} {size}² {name:9s} {speeds[name]:6.2f} it/s", flush=True)
        rows.append((model, size, speeds))
    print(
        f"\n{'model':6s} {'size':>5s} "
        + " ".join(f"{n:>10s}" for n in rows[0][2])
        + "  Loom/diffusers  Loom/ComfyUI (speed)"
    )
    for model, size, speeds in rows:
        ratios = f"{speeds['Loom'] / speeds['diffusers']:14.2f}"
        if "ComfyUI" in speeds:
            ratios += f"  {speeds['Loom'] / speeds['ComfyUI']:12.2f}"
        print(f"{model:6s} {size:5d} " + " ".join(f"{v:10.2f}" for v in speeds.values()) + "  " + ratios)


if __name__ == "__main__":
    main()
