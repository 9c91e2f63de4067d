"""Cold checkpoint load: Loom's `load_checkpoint` against ComfyUI's `load_checkpoint_guess_config`, same file.

Each run is a fresh subprocess (imports done before the clock starts, so only the load is timed); runs of
the two engines alternate. The file is an SD1.5-layout checkpoint with random weights that ComfyUI detects
as SD15 (full-size CLIP-L and VAE, UNet with model_channels 320 and context 768 at reduced depth), written
once as fp16 to /tmp (never committed): bench/make_comfy_sd15.py's file when present, else one written
here. Both engines load the UNet and VAE as fp32 on the CPU and keep the fp16 text encoder in fp16
(computing in fp32). Peak RSS is the process's
high-water mark during the load minus its RSS before it, compared with the file and with the loaded weights.

Run: `python bench/load_bench.py [--runs 5] [--comfy /tmp/comfy]`. Targets (issue 16): time ratio ≤ 1.0,
peak RSS ≤ 1.1× the weights' size.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# Before diffusers: keeps a CUDA-built torchvision importable (engine/torchvision_compat.py).
import engine  # noqa: E402, F401

CHECKPOINT = Path("/tmp/loom_bench/sd15_layout_random.safetensors")
# bench/make_comfy_sd15.py's file, shared with bench/sampling_bench.py: used when present.
SHARED_CHECKPOINT = Path("/tmp/benchmodels/comfy_sd15.safetensors")

_MAKE = """
import sys, torch
sys.path.insert(0, {root!r})
from accelerate import init_empty_weights
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel
from engine.models.save import save_single_file
with init_empty_weights():
    unet = UNet2DConditionModel(
        block_out_channels=[320, 640, 640], layers_per_block=1, cross_attention_dim=768, attention_head_dim=8,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"])
    vae = AutoencoderKL(block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768))
gen = torch.Generator().manual_seed(0)
for model in (unet, vae, text):
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
save_single_file({path!r}, unet, vae, [text], "sd1", dtype=torch.float16)
print("{{}}")
"""

_LOOM = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
import engine  # before diffusers: keeps a CUDA-built torchvision importable
import torch, diffusers, transformers, accelerate
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders import single_file_utils
from transformers import CLIPTextModel
from engine.models.checkpoint import load_checkpoint
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
loaded = load_checkpoint({path!r}, dtype=torch.float32)
seconds = time.perf_counter() - start
models = [loaded.unet, loaded.vae, *loaded.text_encoders]
weights = sum(t.numel() * t.element_size() for m in models for t in m.state_dict().values())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mb": (peak - before) / 1024, "weights_mb": weights / 2**20}}))
"""

_COMFY = """
import json, resource, sys, time
sys.path.insert(0, {comfy!r})
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd, comfy.utils
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config({path!r}, output_vae=True, output_clip=True,
    embedding_directory=None)
seconds = time.perf_counter() - start
assert type(model.model.model_config).__name__ == "SD15", model.model.model_config
modules = [model.model, clip.cond_stage_model, vae.first_stage_model]
weights = sum(t.numel() * t.element_size() for m in modules for t in m.state_dict().values())
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"seconds": seconds, "peak_mb": (peak - before) / 1024, "weights_mb": weights / 2**20}}))
"""


def _run(python: str, code: str, cwd: Path) -> dict[str, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    done = subprocess.run([python, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def make_checkpoint(path: Path = CHECKPOINT) -> Path:
    """Write the random-weight SD1.5-layout file once (about 710 MB, fp16)."""
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {path} ...", flush=True)
        _run(sys.executable, _MAKE.format(root=str(ROOT), path=str(path)), ROOT)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--ckpt", type=Path, default=None, help="an SD1.5-layout .safetensors file")
    args = parser.parse_args()
    path = args.ckpt or (SHARED_CHECKPOINT if SHARED_CHECKPOINT.is_file() else make_checkpoint())
    comfy_python = str(args.comfy / "venv" / "bin" / "python")
    comfy_source = args.comfy / "ComfyUI"
    loom_code = _LOOM.format(root=str(ROOT), path=str(path))
    comfy_code = _COMFY.format(comfy=str(comfy_source), path=str(path))
    results: dict[str, list[dict[str, float]]] = {"Loom": [], "ComfyUI": []}
    for i in range(args.runs):
        order = [
            ("Loom", sys.executable, loom_code, ROOT),
            ("ComfyUI", comfy_python, comfy_code, comfy_source),
        ]
        for name, python, code, cwd in order if i % 2 == 0 else order[::-1]:
            results[name].append(_run(python, code, cwd))
            print(f"run {i + 1} {name:8s} {results[name][-1]['seconds']:6.2f} s", flush=True)
    size_mb = path.stat().st_size / 2**20
    print(f"\nfile {path.name}: {size_mb:.0f} MB (fp16), load average {os.getloadavg()[0]:.1f}")
    columns = ("min s", "median s", "peak RSS MB", "weights MB", "peak/weights")
    print(f"{'':8s} " + " ".join(f"{c:>12s}" for c in columns))
    summary = {}
    for name, runs in results.items():
        times = [r["seconds"] for r in runs]
        peak = max(r["peak_mb"] for r in runs)
        weights = runs[0]["weights_mb"]
        summary[name] = (min(times), statistics.median(times), peak, weights)
        print(
            f"{name:8s} {min(times):7.2f} {statistics.median(times):9.2f} {peak:12.0f} {weights:11.0f} "
            f"{peak / weights:13.2f}"
        )
    loom, comfy = summary["Loom"], summary["ComfyUI"]
    print(
        f"\nLoom/ComfyUI cold load: min {loom[0] / comfy[0]:.2f}, median {loom[1] / comfy[1]:.2f}; "
        f"peak RSS {loom[2] / comfy[2]:.2f}; Loom peak RSS = {loom[2] / size_mb:.2f}× the file, "
        f"{loom[2] / loom[3]:.2f}× its loaded weights"
    )


if __name__ == "__main__":
    main()
