"""What travels along MODEL, CLIP and VAE links: the loaded modules plus what nodes add to them.

Handles are immutable; a node that changes a model (a LoRA, a clip skip) returns a new handle that
shares the modules and carries its patches, so the cached output of the loader stays untouched.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.diffusion.clip import CLIP
from engine.diffusion.devices import manager
from engine.diffusion.latent_formats import LatentFormat, latent_format
from engine.diffusion.patches import WeightPatch
from engine.diffusion.vae import VAE


@dataclass(frozen=True)
class ModelHandle:
    """MODEL: a denoising UNet, its noise schedule and the weight patches to apply while sampling."""

    unet: Any
    sampling: Any  # engine.sampling.ModelSampling
    family: str
    latent: LatentFormat
    patches: tuple[WeightPatch, ...] = ()

    def patched(self, patches: tuple[WeightPatch, ...]) -> ModelHandle:
        return replace(self, patches=self.patches + patches)


# CLIP and VAE answer ComfyUI's calls; they keep their historical handle names here.
ClipHandle = CLIP
VaeHandle = VAE


@dataclass(frozen=True)
class Checkpoint:
    model: ModelHandle
    clip: ClipHandle | None
    vae: VaeHandle | None


_loaded: dict[tuple[str, int, int, str], Checkpoint] = {}
_loading = threading.Lock()


def load(path: Path) -> Checkpoint:
    """Load a checkpoint once per file version; later prompts (and other graphs) share it."""
    from engine.models.checkpoint import load_checkpoint
    from engine.sampling import ModelSampling

    stat = os.stat(path)
    dtype = manager().dtype("unet")
    key = (str(path), stat.st_mtime_ns, stat.st_size, str(dtype))
    with _loading:
        if key in _loaded:
            return _loaded[key]
        loaded = load_checkpoint(path, dtype=dtype)
        fmt = latent_format(loaded.family, loaded.vae_scaling_factor, loaded.metadata)
        model = ModelHandle(loaded.unet, ModelSampling(loaded.prediction_type), loaded.family, fmt)
        clip = None
        if loaded.text_encoders:
            clip = ClipHandle(tuple(loaded.text_encoders), tuple(loaded.pad_ids), loaded.family)
        vae = VAE.wrap(loaded.vae, fmt) if loaded.vae is not None else None
        _loaded.clear()  # keep one checkpoint in memory at a time; the output cache holds what is in use
        _loaded[key] = Checkpoint(model, clip, vae)
        return _loaded[key]


def forget_loaded() -> None:
    """Drop the loader's memory of checkpoints (POST /free with unload_models)."""
    with _loading:
        _loaded.clear()


def load_vae(path: Path) -> VaeHandle:
    """A standalone VAE file in the original layout (keys `encoder.*`, `decoder.*`, optionally prefixed)."""
    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import load_state_dict

    state, metadata = load_state_dict(path)
    return vae_from_state_dict(state, metadata, path.name)


def apply_lora(
    path: Path, model: ModelHandle, clip: ClipHandle | None, strength_model: float, strength_clip: float
) -> tuple[ModelHandle, ClipHandle | None]:
    """New handles carrying the LoRA's patches; a file that fits neither model is an error."""
    from engine.diffusion.lora import LoraError, lora_patches, text_aliases, unet_aliases
    from engine.models.files import load_state_dict

    state, _ = load_state_dict(path)
    unet_patches, unknown = lora_patches(state, unet_aliases(model.unet), strength_model)
    clip_patches: tuple[WeightPatch, ...] = ()
    if clip is not None:
        clip_patches, unknown_text = lora_patches(state, text_aliases(clip.encoders), strength_clip)
        unknown &= unknown_text
    if not unet_patches and not clip_patches:
        raise LoraError(
            f"{path.name} matches no layer of this model (first of its layers: {sorted(unknown)[:2]})"
        )
    return model.patched(unet_patches), clip.patched(clip_patches) if clip is not None else None
