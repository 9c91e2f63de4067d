"""Tiny SD1 and SDXL MODELs (random weights, built in memory) and a helper that samples them."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion.guider import CFGGuider
from engine.diffusion.handles import model_patcher
from engine.diffusion.latent_formats import latent_format
from engine.diffusion.model_patcher import ModelPatcher
from engine.models.tiny import build_tiny
from engine.sampling import ModelSampling, prepare_noise, sigmas_for

_cache: dict[str, Any] = {}


def tiny_model(family: str) -> ModelPatcher:
    """A fresh MODEL over a UNet built once per session (patches never stay on the shared UNet)."""
    if family not in _cache:
        _cache[family] = build_tiny(family).unet  # type: ignore[arg-type]
    return model_patcher(_cache[family], ModelSampling("eps"), family, latent_format(family, 0.18215, {}))


def conditioning(model: ModelPatcher, seed: int) -> list[Any]:
    generator = torch.Generator().manual_seed(seed)
    width = model.unet.config.cross_attention_dim
    options: dict[str, Any] = {}
    if model.family == "sdxl":
        pooled = model.unet.config.projection_class_embeddings_input_dim - 6 * 8
        options["pooled_output"] = torch.randn(1, pooled, generator=generator)
    return [[torch.randn(1, 77, width, generator=generator), options]]


def sample(
    model: ModelPatcher,
    cfg: float = 5.0,
    steps: int = 3,
    sampler: str = "euler",
    latent: Any = None,
    denoise_mask: Any = None,
    guider: Any = None,
    seed: int = 3,
) -> Any:
    """Sample an 8x8 latent with CFG (or `guider`) and return the VAE-space result."""
    latent = torch.zeros(1, 4, 8, 8) if latent is None else latent
    if guider is None:
        guider = CFGGuider(model)
        guider.set_conds(conditioning(model, 1), conditioning(model, 2))
        guider.set_cfg(cfg)
    sigmas = sigmas_for(model.get_model_object("model_sampling"), "normal", steps, 1.0, sampler)
    noise = prepare_noise(latent, seed)
    return guider.sample(noise, latent, sampler, sigmas, denoise_mask=denoise_mask, seed=seed)


@pytest.fixture(params=["sd1", "sdxl"])
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)
