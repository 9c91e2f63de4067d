"""Loom's KSampler + VAEDecode against diffusers' StableDiffusionPipeline, side by side on the same weights.

Both run Euler with the same sigmas, the same CFG and step count, from the same prompt encodings
(text encoding is excluded on both sides: Loom caches it between runs). The model is a random-weight
SD1.x-layout UNet/VAE of moderate width, big enough that the UNet dominates as it does for real models.
Target: ratio (Loom / diffusers) ≤ 1.05 on the CPU. Run: `python bench/sd_bench.py [--size 256]`.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine import folders
from engine.executor import Executor
from engine.graph import validate_prompt
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny
from nodes import builtin_registry


def medium_sd1(seed: int = 0) -> Any:
    """The tiny SD1 set with a wider UNet and VAE so timings resemble a real model's proportions."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    tiny = build_tiny("sd1", seed)
    torch.manual_seed(seed)
    config = dict(tiny.unet.config)
    config.update(
        block_out_channels=[64, 128, 128],
        layers_per_block=1,
        attention_head_dim=8,
        down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    )
    tiny.unet = UNet2DConditionModel(**{k: v for k, v in config.items() if not k.startswith("_")}).eval()
    tiny.vae = AutoencoderKL(
        block_out_channels=[32, 64, 64, 64],
        layers_per_block=1,
        latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=32,
    ).eval()
    return tiny


def workflow(size: int, steps: int, cfg: float, seed: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "bench.safetensors"}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["4", 0],
                "latent_image": ["2", 0],
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def diffusers_pipeline(models: Any) -> Any:
    from diffusers import EulerDiscreteScheduler, StableDiffusionPipeline

    from engine.models.tokenizer import get_clip_tokenizer

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="linspace",
    )
    return StableDiffusionPipeline(
        vae=models.vae,
        text_encoder=models.text_encoders[0],
        tokenizer=get_clip_tokenizer(),
        unet=models.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = 7.0
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        configured = folders.Folders.under(root)
        configured.models["checkpoints"][0].mkdir(parents=True)
        folders.configure(configured)
        models = medium_sd1()
        save_single_file(
            configured.models["checkpoints"][0] / "bench.safetensors",
            models.unet,
            models.vae,
            models.text_encoders,
            "sd1",
        )

        registry = builtin_registry()
        executor = Executor(registry)

        def run_loom(seed: int) -> None:
            checked = validate_prompt(registry, workflow(args.size, args.steps, cfg, seed))
            result = executor.execute(checked.prompt, "bench", checked.outputs)
            assert result.status == "success", result.error

        run_loom(0)  # loads the checkpoint and encodes the prompts once, as a second run would find them
        from engine.diffusion.handles import load

        loaded = load(configured.models["checkpoints"][0] / "bench.safetensors")
        assert loaded.clip is not None and loaded.vae is not None
        pipe = diffusers_pipeline(models)
        pipe.unet, pipe.vae, pipe.text_encoder = loaded.model.unet, loaded.vae.vae, loaded.clip.encoders[0]
        pipe.set_progress_bar_config(disable=True)
        positive = loaded.clip.encode_from_tokens(loaded.clip.tokenize("a red circle"))
        negative = loaded.clip.encode_from_tokens(loaded.clip.tokenize(""))

        def run_diffusers(seed: int) -> None:
            pipe(
                prompt_embeds=positive,
                negative_prompt_embeds=negative,
                height=args.size,
                width=args.size,
                num_inference_steps=args.steps,
                guidance_scale=cfg,
                output_type="np",
                generator=torch.Generator().manual_seed(seed),
            )

        run_diffusers(0)
        loom_times, diffusers_times = [], []
        for repeat in range(1, args.repeats + 1):  # interleaved, so both see the same machine load
            for runner, times in ((run_loom, loom_times), (run_diffusers, diffusers_times)):
                start = time.perf_counter()
                runner(repeat)
                times.append(time.perf_counter() - start)

    loom, reference = statistics.median(loom_times), statistics.median(diffusers_times)
    print(f"{'pipeline':<28} {'median s':>9} {'s/step':>8}")
    print(f"{'Loom KSampler + VAEDecode':<28} {loom:>9.3f} {loom / args.steps:>8.3f}")
    print(f"{'diffusers SD pipeline':<28} {reference:>9.3f} {reference / args.steps:>8.3f}")
    ratio = loom / reference
    verdict = "PASS" if ratio <= 1.05 else "FAIL"
    print(
        f"summary: {verdict} — Loom / diffusers = {ratio:.3f} at {args.size}², "
        f"{args.steps} Euler steps, CFG {cfg} (target ≤ 1.05)"
    )


if __name__ == "__main__":
    main()
