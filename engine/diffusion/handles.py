"""What travels along MODEL, CLIP and VAE links: the loaded modules plus what nodes add to them.

MODEL is a ComfyUI-style ModelPatcher (engine.diffusion.model_patcher); a node that changes it
clones it first. CLIP and VAE handles are immutable; a node that changes one (a LoRA, a clip skip)
returns a new handle that shares the modules and carries its patches, so the cached output of the
loader stays untouched.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from engine.diffusion.devices import manager
from engine.diffusion.diffusion_model import diffusion_model
from engine.diffusion.latent_formats import LatentFormat, latent_format
from engine.diffusion.model_patcher import ModelPatcher
from engine.diffusion.patches import WeightPatch

# MODEL is a ModelPatcher; the old name stays for code written before it.
ModelHandle = ModelPatcher


def model_patcher(unet: Any, sampling: Any, family: str, latent: LatentFormat) -> ModelPatcher:
    """A MODEL for a loaded UNet with its noise schedule (engine.sampling.ModelSampling)."""
    return ModelPatcher(diffusion_model(unet, sampling, family, latent))


@dataclass(frozen=True)
class ClipHandle:
    """CLIP: the text encoders of a checkpoint, their padding, the layer to read and weight patches."""

    encoders: tuple[Any, ...]
    pad_ids: tuple[int, ...]
    family: str
    # Which hidden layer conditions the UNet (CLIPSetLastLayer); None is the family's default.
    layer: int | None = None
    patches: tuple[WeightPatch, ...] = ()
    # Flow families (SD3, Flux): what each encoder is (clip_l, clip_g, t5xxl) and its width.
    roles: tuple[str, ...] = ()
    widths: tuple[int, ...] = ()
    # CLIPLoader's device input: "cpu" runs these encoders on the CPU whatever the compute device.
    device: str | None = None

    def patched(self, patches: tuple[WeightPatch, ...]) -> ClipHandle:
        return replace(self, patches=self.patches + patches)


@dataclass(frozen=True)
class VaeHandle:
    """VAE: the autoencoder and its latent conventions."""

    vae: Any
    latent: LatentFormat


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
        vae = VaeHandle(loaded.vae, fmt) if loaded.vae is not None else None
        _loaded.clear()  # keep one checkpoint in memory at a time; the output cache holds what is in use
        _loaded[key] = Checkpoint(model, clip, vae)
        return _loaded[key]


def _load_flow_checkpoint(path: Path) -> Checkpoint | None:
    """An SD3/SD3.5 or Flux all-in-one checkpoint (engine.models.flow_families), or None for other files."""
    from engine.models import flow_families
    from engine.models.files import load_state_dict, read_header

    if path.suffix.lower() not in (".safetensors", ".sft"):
        return None
    shapes = read_header(path).shapes
    detected = flow_families.detect(shapes)
    if detected is None:
        return None
    state, _ = load_state_dict(path)
    return flow_families.load_checkpoint(path, state, shapes, detected)


def forget_loaded() -> None:
    """Drop the loader's memory of checkpoints (POST /free with unload_models)."""
    with _loading:
        _loaded.clear()


def load_vae(path: Path) -> VaeHandle:
    """A standalone VAE file in the original layout (keys `encoder.*`, `decoder.*`, optionally prefixed)."""
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    from engine.models.detect import VAE_PREFIX, vae_config_from_shapes
    from engine.models.errors import UnsupportedModelError
    from engine.models.files import load_state_dict

    state, metadata = load_state_dict(path)
    if any(v.shape[1] == 16 for k, v in state.items() if k.endswith("decoder.conv_in.weight")):
        from engine.models.flow_families import vae_from_state

        return vae_from_state(state, path.name)
    state = {VAE_PREFIX + k.removeprefix(VAE_PREFIX): v for k, v in state.items()}
    if f"{VAE_PREFIX}decoder.conv_in.weight" not in state:
        found = ", ".join(sorted(state)[:3])
        raise UnsupportedModelError(
            f"{path.name}: not a VAE in the original layout (found keys like {found})"
        )
    config = vae_config_from_shapes({k: tuple(v.shape) for k, v in state.items()}, "sd1", {})
    vae: Any = AutoencoderKL(**config)
    missing, _ = vae.load_state_dict(convert_ldm_vae_checkpoint(state, config), strict=False)
    if missing:
        raise UnsupportedModelError(f"{path.name}: VAE weights missing, e.g. {missing[:3]}")
    vae.eval().requires_grad_(False).to(manager().dtype("vae"))
    return VaeHandle(vae, latent_format("sd1", config["scaling_factor"], metadata))


def apply_lora(
    path: Path, model: ModelPatcher, clip: ClipHandle | None, strength_model: float, strength_clip: float
) -> tuple[ModelPatcher, ClipHandle | None]:
    """A clone of the model with the LoRA's weight patches (ModelPatcher.add_patches, as ComfyUI's
    loader does) and a CLIP handle with its text-encoder patches; a file that fits neither is an error."""
    from engine.diffusion.lora import LoraError, lora_patches, model_lora_patches, text_aliases
    from engine.models.files import load_state_dict

    state, _ = load_state_dict(path)
    unet_patches, unknown = model_lora_patches(state, model.unet)
    clip_patches: tuple[WeightPatch, ...] = ()
    if clip is not None:
        clip_patches, unknown_text = lora_patches(state, text_aliases(clip.encoders), strength_clip)
        unknown &= unknown_text
    if not unet_patches and not clip_patches:
        raise LoraError(
            f"{path.name} matches no layer of this model (first of its layers: {sorted(unknown)[:2]})"
        )
    patched = model.clone()
    if strength_model != 0:
        patched.add_patches(unet_patches, strength_model)
    return patched, clip.patched(clip_patches) if clip is not None else None
