"""Same ControlNet file, hint image, checkpoint and seed through ComfyUI and Loom: PSNR of the two images.

Writes a random-weight ControlNet in the original (lllyasviel, `control_model.*`) layout built for the
bench SD1.5 checkpoint (`bench/make_comfy_sd15.py`: a UNet of two 320-channel levels): its encoder is the
checkpoint's own UNet encoder, jittered, with a full-size hint encoder (16, 32, 96, 256) and random "zero"
convolutions, so it changes the image. A second one (another seed) is written for the chained case.
Uploads one hint image to both servers, then runs text-to-image with ControlNetApplyAdvanced (full range;
part of the range at lower strength; two ControlNets chained; the deprecated ControlNetApply) on each
and prints the PSNR per case (target ≥ 30 dB), with the PSNR of Loom with and without the ControlNet to
show the control matters. Both servers must already run and see MODELS (checkpoints/ and controlnet/),
e.g. through an --extra-model-paths-config file.

    python bench/controlnet_parity.py --comfy 18751 --loom 18752 --models /tmp/cn-bench-models \
        --ckpt comfy_sd15.safetensors
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image, upload_image  # bench/comfy_client.py
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import engine  # noqa: F401  (configures the environment before diffusers is imported)

HINT_NAME = "controlnet_parity_hint.png"
NETS = ("bench_cn_a.safetensors", "bench_cn_b.safetensors")


def write_controlnet(checkpoint: Path, out: Path, seed: int) -> None:
    """An original-layout ControlNet for `checkpoint`'s UNet, every weight jittered (fp16, as shipped)."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    from engine.models.checkpoint import load_checkpoint
    from tests.nodes.controlnet_fixtures import controlnet_to_original

    unet = load_checkpoint(checkpoint).unet
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for name, param in net.named_parameters():
            scale = 0.02 if name.startswith("controlnet_") else 0.01
            param.add_(torch.randn_like(param) * scale)
    state = {"control_model." + k: v.half() for k, v in controlnet_to_original(net).items()}
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, out)


def hint_png(size: int) -> bytes:
    """White scribbles on black: a circle, a box and a diagonal, as an edge/scribble hint looks."""
    y, x = np.mgrid[0:size, 0:size] / size
    ring = np.abs(np.hypot(x - 0.4, y - 0.45) - 0.25) < 0.02
    box = ((np.abs(x - 0.7) < 0.15) & (np.abs(y - 0.7) < 0.015)) | (
        (np.abs(y - 0.7) < 0.15) & (np.abs(x - 0.55) < 0.015)
    )
    line = np.abs(x - y) < 0.012
    pixels = ((ring | box | line) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.stack([pixels] * 3, axis=-1)).save(buffer, format="PNG")
    return buffer.getvalue()


def graph(
    ckpt: str, size: int, steps: int, sampler: str, scheduler: str, controls: list[dict[str, Any]]
) -> dict:
    """Text-to-image with each control applied in turn (Advanced node unless `old`)."""
    prompt: dict[str, Any] = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a house by a lake", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "hint": {"class_type": "LoadImage", "inputs": {"image": HINT_NAME}},
        "latent": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
    }
    positive, negative = ["pos", 0], ["neg", 0]
    for n, control in enumerate(controls):
        prompt[f"cn{n}"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": control["net"]}}
        if control.get("old"):
            prompt[f"apply{n}"] = {
                "class_type": "ControlNetApply",
                "inputs": {"conditioning": positive, "control_net": [f"cn{n}", 0], "image": ["hint", 0],
                           "strength": control["strength"]},
            }  # fmt: skip
            positive = [f"apply{n}", 0]
            continue
        prompt[f"apply{n}"] = {
            "class_type": "ControlNetApplyAdvanced",
            "inputs": {"positive": positive, "negative": negative, "control_net": [f"cn{n}", 0],
                       "image": ["hint", 0], "strength": control["strength"],
                       "start_percent": control.get("start", 0.0), "end_percent": control.get("end", 1.0)},
        }  # fmt: skip
        positive, negative = [f"apply{n}", 0], [f"apply{n}", 1]
    prompt["sample"] = {
        "class_type": "KSampler",
        "inputs": {"model": ["ckpt", 0], "positive": positive, "negative": negative,
                   "latent_image": ["latent", 0], "seed": 7, "steps": steps, "cfg": 6.0,
                   "sampler_name": sampler, "scheduler": scheduler, "denoise": 1.0},
    }  # fmt: skip
    prompt["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}}
    prompt["save"] = {
        "class_type": "SaveImage",
        "inputs": {"filename_prefix": "cn_parity", "images": ["decode", 0]},
    }
    return prompt


CASES: list[tuple[str, str, str, list[dict[str, Any]]]] = [
    ("Advanced, strength 1, full range", "euler", "normal", [{"net": NETS[0], "strength": 1.0}]),
    ("Advanced, strength 0.7, 20 %–70 %", "dpmpp_2m", "karras",
     [{"net": NETS[0], "strength": 0.7, "start": 0.2, "end": 0.7}]),
    ("two chained (1.0 + 0.6 from 30 %)", "euler", "normal",
     [{"net": NETS[0], "strength": 1.0}, {"net": NETS[1], "strength": 0.6, "start": 0.3}]),
    ("deprecated ControlNetApply, 0.9", "euler_ancestral", "normal",
     [{"net": NETS[0], "strength": 0.9, "old": True}]),
]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--comfy", type=int, required=True, help="ComfyUI port")
    parser.add_argument("--loom", type=int, required=True, help="Loom port")
    parser.add_argument("--models", type=Path, required=True, help="models folder both servers read")
    parser.add_argument("--ckpt", default="comfy_sd15.safetensors", help="file in MODELS/checkpoints")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--timeout", type=float, default=1800.0)
    args = parser.parse_args()
    for seed, name in enumerate(NETS):
        path = args.models / "controlnet" / name
        if not path.exists():
            write_controlnet(args.models / "checkpoints" / args.ckpt, path, seed)
    png = hint_png(args.size)
    for port in (args.comfy, args.loom):
        upload_image(port, HINT_NAME, png)
    worst = math.inf
    plain_id = queue_prompt(args.loom, graph(args.ckpt, args.size, args.steps, "euler", "normal", []))
    plain = saved_image(args.loom, plain_id, args.timeout)
    for label, sampler, scheduler, controls in CASES:
        prompt = graph(args.ckpt, args.size, args.steps, sampler, scheduler, controls)
        started = time.time()
        comfy = saved_image(args.comfy, queue_prompt(args.comfy, prompt), args.timeout)
        comfy_s = time.time() - started
        started = time.time()
        loom = saved_image(args.loom, queue_prompt(args.loom, prompt), args.timeout)
        loom_s = time.time() - started
        if isinstance(comfy, str) or isinstance(loom, str):
            why = [
                f"{name} {v if isinstance(v, str) else 'ok'}"
                for name, v in (("ComfyUI", comfy), ("Loom", loom))
            ]
            print(f"{label}: {', '.join(why)}")
            worst = -math.inf
            continue
        value = psnr(comfy, loom)
        worst = min(worst, value)
        effect = f"{psnr(loom, plain):.1f} dB" if not isinstance(plain, str) and sampler == "euler" else "-"
        print(
            f"{label:40s} {sampler}/{scheduler:7s} PSNR {value:6.2f} dB  max |Δ| "
            f"{int(np.abs(comfy.astype(int) - loom).max()):3d}  (vs no ControlNet: {effect})  "
            f"ComfyUI {comfy_s:.1f} s, Loom {loom_s:.1f} s"
        )
    print(f"worst PSNR {worst:.2f} dB ({'meets' if worst >= 30 else 'misses'} the 30 dB target)")


if __name__ == "__main__":
    main()
