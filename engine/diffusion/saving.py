"""ComfyUI's save_checkpoint on Loom's MODEL, CLIP and VAE: the original single-file layout, patches baked in.

The state dict is the one `engine.models.save` writes for trained models (what ComfyUI and A1111 load:
`model.diffusion_model.*`, `first_stage_model.*`, the family's text-encoder prefixes), taken while the
MODEL's and CLIP's weight patches (LoRA, merges) are applied to the shared modules, and copied before
they are undone. The metadata follows ComfyUI's CheckpointSave: `modelspec.*` for SDXL, the prediction
key, `prompt` and the workflow; Loom adds `loom.family` and `loom.arch` (hyper-parameters shapes do not
reveal, read back by Loom's detection and ignored by ComfyUI).
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import torch

from engine.models.detect import ARCH_METADATA_KEY

SAVABLE_FAMILIES = ("sd1", "sd2", "sdxl", "sdxl_refiner")
_ARCHITECTURES = {"sdxl": "stable-diffusion-xl-v1-base", "sdxl_refiner": "stable-diffusion-xl-v1-refiner"}


class SaveError(ValueError):
    """A model Loom cannot write in the original single-file layout."""


def checkpoint_metadata(
    model: Any, title: str, prompt: dict[str, Any] | None, extra: dict[str, Any]
) -> dict[str, str]:
    """ComfyUI's CheckpointSave metadata for `model` (title: "<file name> <counter>")."""
    metadata: dict[str, str] = {}
    if model.family in _ARCHITECTURES:
        metadata["modelspec.architecture"] = _ARCHITECTURES[model.family]
        metadata["modelspec.sai_model_spec"] = "1.0.0"
        metadata["modelspec.implementation"] = "sgm"
        metadata["modelspec.title"] = title
    metadata["modelspec.predict_key"] = "v" if _v_prediction(model) else "epsilon"
    metadata["prompt"] = json.dumps(prompt) if prompt else ""
    metadata.update({key: json.dumps(value) for key, value in extra.items()})
    return metadata


def _v_prediction(model: Any) -> bool:
    return getattr(model.model.model_type, "name", "") == "V_PREDICTION"


def checkpoint_state(
    model: Any, clip: Any | None, vae: Any | None
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The original-layout state dict of the model (and CLIP, VAE) with their patches, and Loom's
    architecture metadata; every tensor is a contiguous copy."""
    from engine.models.save import arch_hints, original_state_dict

    family = model.family
    if family not in SAVABLE_FAMILIES:
        raise SaveError(f"saving {family} models in the single-file layout is not supported by Loom")
    if clip is not None and clip.family != family:
        raise SaveError(f"the CLIP is a {clip.family} text encoder but the model is {family}")
    encoders = tuple(clip.encoders) if clip is not None else ()
    first_stage = vae.first_stage_model if vae is not None else None
    with ExitStack() as stack:
        stack.enter_context(model.applied())
        if clip is not None:
            stack.enter_context(clip.weights_patched())
        state = original_state_dict(model.unet, first_stage, encoders, family)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
    if _v_prediction(model):
        state["v_pred"] = torch.tensor([])
        if getattr(model.get_model_object("model_sampling"), "zsnr", False):
            state["ztsnr"] = torch.tensor([])
    loom = {
        "loom.family": family,
        ARCH_METADATA_KEY: json.dumps(arch_hints(model.unet, first_stage, encoders)),
    }
    return state, loom


def save_checkpoint(
    path: Path, model: Any, clip: Any | None, vae: Any | None, metadata: dict[str, str]
) -> Path:
    """Write MODEL (and CLIP, VAE) as one original-layout .safetensors file."""
    from safetensors.torch import save_file

    state, loom = checkpoint_state(model, clip, vae)
    save_file(state, str(path), metadata={**loom, **metadata})
    return path


def clip_files_state(clip: Any) -> dict[str, dict[str, torch.Tensor]]:
    """CLIPSave's files: per encoder (`clip_l`, `clip_g`, ...) its weights with the patches applied, under
    the transformers names ComfyUI writes (`text_model.encoder.layers.0.…`, `text_projection.weight`)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    with clip.weights_patched():
        for key, tensor in clip.get_sd().items():
            module, _, name = key.partition(".")
            name = name.removeprefix("transformer.")
            out.setdefault(module, {})[name] = tensor.detach().to("cpu", copy=True).contiguous()
    for role, encoder in zip(getattr(clip, "roles", ()), clip.encoders, strict=False):
        proto = getattr(encoder, "tokenizer_data", {}).get("spiece_model")
        if proto is not None and role in out:  # Gemma's tokenizer travels in its file, as ComfyUI saves it
            out[role]["spiece_model"] = torch.frombuffer(bytearray(proto), dtype=torch.uint8)
    return out
