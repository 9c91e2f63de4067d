"""Tiny random-weight checkpoints in each real Stable Diffusion layout, written once per test session."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.models.save import save_single_file
from engine.models.tiny import build_tiny

FAMILIES = ("sd1", "sd2", "sdxl")


def write_tiny_checkpoints(folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    models = {}
    for family in FAMILIES:
        tiny = build_tiny(family)  # type: ignore[arg-type]
        save_single_file(
            folder / f"tiny_{family}.safetensors",
            tiny.unet,
            tiny.vae,
            tiny.text_encoders,
            tiny.family,
            None,
            tiny.prediction_type,
        )
        models[family] = tiny
    return models


def text_to_image(
    ckpt: str,
    seed: int = 1,
    steps: int = 3,
    sampler: str = "euler",
    scheduler: str = "normal",
    text: str = "a red circle",
    size: int = 64,
    cfg: float = 7.0,
) -> dict[str, Any]:
    """ComfyUI's default text-to-image graph (node ids as in its default workflow)."""
    return {
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": text, "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "Loom", "images": ["8", 0]}},
    }
