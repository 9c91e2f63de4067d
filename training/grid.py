"""A PNG grid of generated samples: one row per prompt, one column per seed, scaled up ×2.

python -m training.grid --out docs/default-model-samples.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

PROMPTS = [
    "a red circle on the left",
    "a blue square on the right",
    "a green triangle at the top",
    "a yellow circle at the bottom",
    "a purple square in the center",
    "a small orange triangle on the left",
    "a large blue circle in the center",
    "a small red square at the top",
    "a triangle",
    "a red circle on the left and a blue square on the right",
    "a green triangle at the top and a yellow circle at the bottom",
]
LABEL_WIDTH = 330


def grid(images: np.ndarray, prompts: list[str], columns: int, scale: int = 2) -> Image.Image:
    side = images.shape[1] * scale
    canvas = Image.new("RGB", (LABEL_WIDTH + columns * (side + 2), len(prompts) * (side + 2)), "white")
    draw = ImageDraw.Draw(canvas)
    for row, prompt in enumerate(prompts):
        draw.text((4, row * (side + 2) + side // 2 - 6), prompt, fill="black")
        for col in range(columns):
            tile = Image.fromarray(images[row * columns + col]).resize((side, side), Image.Resampling.NEAREST)
            canvas.paste(tile, (LABEL_WIDTH + col * (side + 2), row * (side + 2)))
    return canvas


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/checkpoints/loom_default.safetensors")
    parser.add_argument("--out", type=Path, default=Path("docs/default-model-samples.png"))
    parser.add_argument("--seeds", type=int, default=6)
    args = parser.parse_args(argv)

    from engine.models.checkpoint import load_checkpoint

    from .generate import TextToImage

    t2i = TextToImage(load_checkpoint(args.checkpoint))
    prompts = [p for p in PROMPTS for _ in range(args.seeds)]
    images = t2i(prompts, list(range(args.seeds)) * len(PROMPTS))
    grid(images, PROMPTS, args.seeds).save(args.out)
    return args.out


if __name__ == "__main__":
    main()
