"""Fit the default model's latent → RGB preview projection and store it in the checkpoint.

Live previews during sampling project each latent pixel to a colour with a 4×3 matrix and a bias
(engine/diffusion/latent_formats.py). SD's published factors fit SD's VAE only; this fits ours by least
squares from scaled latents of rendered scenes to the scenes shrunk to latent size, and writes them to
the file's `loom.latent_rgb` metadata, which the loader reads.

    python -m training.latent_preview models/checkpoints/loom_default.safetensors
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from engine.diffusion.latent_formats import RGB_METADATA_KEY
from engine.models.checkpoint import load_checkpoint

from .dataset import make_scenes, to_tensor


def fit(vae: Any, scaling_factor: float, scenes: int = 512, seed: int = 7) -> dict[str, list[Any]]:
    """Least-squares factors [4][3] and bias [3] from scaled latents to pixels in -1..1."""
    pixels = to_tensor(make_scenes(scenes, seed, two_object_prob=0.15).images)
    assert isinstance(pixels, torch.Tensor)
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mode() * scaling_factor
    factor = pixels.shape[-1] // latents.shape[-1]
    targets = torch.nn.functional.avg_pool2d(pixels, factor)
    x = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    y = targets.permute(0, 2, 3, 1).reshape(-1, 3).double()
    solution = torch.linalg.lstsq(torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], 1), y).solution
    return {
        "factors": [[round(v, 5) for v in row] for row in solution[:-1].tolist()],
        "bias": [round(v, 5) for v in solution[-1].tolist()],
    }


def embed(checkpoint: Path) -> dict[str, list[Any]]:
    """Fit the projection for a checkpoint's VAE and rewrite the file with it in the metadata."""
    from safetensors.torch import load_file, save_file

    loaded = load_checkpoint(checkpoint)
    projection = fit(loaded.vae, loaded.vae_scaling_factor)
    state = load_file(str(checkpoint))
    save_file(state, str(checkpoint), metadata={**loaded.metadata, RGB_METADATA_KEY: json.dumps(projection)})
    return projection


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    print(json.dumps(embed(parser.parse_args(argv).checkpoint)))


if __name__ == "__main__":
    main()
