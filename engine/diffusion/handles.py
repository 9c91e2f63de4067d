"""What travels along MODEL, CLIP and VAE links: the loaded modules plus what nodes add to them.

MODEL is a ComfyUI-style ModelPatcher (engine.diffusion.model_patcher); a node that changes it
clones it first. CLIP and VAE handles are immutable; a node that changes one (a LoRA, a clip skip)
returns a new handle that shares the modules and carries its patches, so the cached output of the
loader stays untouched.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.diffusion.clip import CLIP
from engine.diffusion.devices import manager
from engine.diffusion.diffusion_model import diffusion_model
from engine.diffusion.latent_formats import LatentFormat, latent_format
from engine.diffusion.model_patcher import ModelPatcher
from engine.diffusion.vae import VAE

# MODEL is a ModelPatcher; the old name stays for code written before it.
ModelHandle = ModelPatcher


def model_patcher(unet: Any, sampling: Any, family: str, latent: LatentFormat) -> ModelPatcher:
    """A MODEL for a loaded UNet with its noise schedule (engine.sampling.ModelSampling)."""
    return ModelPatcher(diffusion_model(unet, sampling, family, latent))


# CLIP and VAE answer ComfyUI's calls; they keep their historical handle names here.
ClipHandle = CLIP
VaeHandle = VAE


@dataclass(frozen=True)
class Checkpoint:
    model: ModelPatcher
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
        flow = _load_flow_checkpoint(path)
        if flow is not None:
            _loaded.clear()
            _loaded[key] = flow
            return flow
        loaded = load_checkpoint(path, dtype=dtype)
        fmt = latent_format(loaded.family, loaded.vae_scaling_factor, loaded.metadata)
        model = model_patcher(loaded.unet, ModelSampling(loaded.prediction_type), loaded.family, fmt)
        clip = None
        if loaded.text_encoders:
            clip = ClipHandle(tuple(loaded.text_encoders), tuple(loaded.pad_ids), loaded.family)
        vae = VAE.wrap(loaded.vae, fmt) if loaded.vae is not None else None
        _loaded.clear()  # keep one checkpoint in memory at a time; the output cache holds what is in use
        _loaded[key] = Checkpoint(model, clip, vae)
        return _loaded[key]


def _load_flow_checkpoint(path: Path) -> Checkpoint | None:
    """An SD3/SD3.5 or Flux all-in-one checkpoint (engine.models.flow_families), or None for other files."""
    from engine.models import flow_families
    from engine.models.files import open_state_dict, read_header

    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    shapes = read_header(path).shapes
    detected = flow_families.detect(shapes)
    if detected is None:
        return None
    state, _ = open_state_dict(path)  # lazy: each model reads its own tensors, once
    return flow_families.load_checkpoint(path, state, shapes, detected)


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
    path: Path, model: ModelPatcher, clip: ClipHandle | None, strength_model: float, strength_clip: float
) -> tuple[ModelPatcher, ClipHandle | None]:
    """LoraLoader: the LoRA file's patches on a clone of the model and a new CLIP handle."""
    from engine.models.files import load_state_dict

    state, _ = load_state_dict(path)
    patched, patched_clip = lora_for_models(state, model, clip, strength_model, strength_clip, path.name)
    assert patched is not None
    return patched, patched_clip


def lora_for_models(
    state: Mapping[str, Any],
    model: ModelPatcher | None,
    clip: ClipHandle | None,
    strength_model: float,
    strength_clip: float,
    name: str = "LoRA",
) -> tuple[ModelPatcher | None, ClipHandle | None]:
    """A clone of the model with the LoRA's weight patches (ModelPatcher.add_patches, as ComfyUI's
    loader does) and a CLIP handle with its text-encoder patches; a LoRA that fits neither is an error
    naming its layers."""
    from engine.diffusion.lora import LoraError, clip_lora_patches, model_lora_patches

    unet_patches: dict[str, Any] = {}
    unknown: set[str] = set()
    if model is not None:
        unet_patches, unknown = model_lora_patches(state, model.unet)
    clip_patches: dict[str, Any] = {}
    if clip is not None:
        clip_patches, unknown_text = clip_lora_patches(state, clip)
        unknown = unknown & unknown_text if model is not None else unknown_text
    if not unet_patches and not clip_patches:
        raise LoraError(f"{name} matches no layer of this model (first of its layers: {sorted(unknown)[:2]})")
    patched = None
    if model is not None:
        patched = model.clone()
        if strength_model != 0:
            patched.add_patches(unet_patches, strength_model)
    patched_clip = None
    if clip is not None:
        patched_clip = clip.clone()
        if strength_clip != 0:
            patched_clip.add_patches(clip_patches, strength_clip)
    return patched, patched_clip
