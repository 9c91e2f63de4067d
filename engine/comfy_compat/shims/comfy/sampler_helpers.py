"""ComfyUI's comfy.sampler_helpers: cond conversion, mask preparation, model preparation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from engine.diffusion.guidance import convert_cond

__all__ = [
    "cleanup_additional_models",
    "cleanup_models",
    "convert_cond",
    "get_additional_models",
    "get_models_from_cond",
    "prepare_mask",
    "prepare_sampling",
]


def prepare_mask(noise_mask: torch.Tensor, shape: Any, device: Any) -> torch.Tensor:
    """A noise mask resized to a latent of `shape` ([B, C, H, W]), repeated over batch and channels."""
    mask = noise_mask.reshape(-1, 1, noise_mask.shape[-2], noise_mask.shape[-1]).float()
    mask = F.interpolate(mask, size=tuple(shape[2:]), mode="bilinear")
    repeats = -(-shape[0] // mask.shape[0])
    return mask.repeat(repeats, shape[1], 1, 1)[: shape[0]].to(device)


def get_models_from_cond(cond: list[dict[str, Any]], model_type: str) -> list[Any]:
    models: list[Any] = []
    for entry in cond:
        if model_type in entry:
            value = entry[model_type]
            models += value if isinstance(value, list) else [value]
    return models


def get_additional_models(conds: dict[str, list[dict[str, Any]]], dtype: Any) -> tuple[list[Any], int]:
    """Models that conditioning entries carry (ControlNets, GLIGEN): none that Loom loads yet."""
    models: list[Any] = []
    for entries in conds.values():
        models += get_models_from_cond(entries, "control") + get_models_from_cond(entries, "gligen")
    return models, 0


def cleanup_additional_models(models: Any) -> None:
    """Loom's model manager keeps and evicts models itself; nothing to release here."""


def cleanup_models(conds: Any, models: Any) -> None:
    """Loom's model manager keeps and evicts models itself; nothing to release here."""


def prepare_sampling(
    model: Any, noise_shape: Any, conds: Any, model_options: Any = None
) -> tuple[Any, Any, list[Any]]:
    """Put the model on its device; returns (model.model, conds, loaded models) as ComfyUI does."""
    from engine.diffusion.devices import manager

    manager().use(model.unet)
    return model.model, conds, []
