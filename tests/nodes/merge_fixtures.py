"""Files for the merging, saving and old-loader tests: second tiny checkpoints, A1111 hypernetworks in
their real layout, diffusers folders of the tiny models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from engine.folders import Folders
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny


def add_checkpoint(folders: Folders, folder: Path, family: str, seed: int) -> str:
    """A tiny checkpoint of `family` with weights from `seed`, in an extra checkpoints folder."""
    name = f"tiny_{family}_seed{seed}.safetensors"
    tiny = build_tiny(family, seed=seed)  # type: ignore[arg-type]
    folder.mkdir(parents=True, exist_ok=True)
    save_single_file(
        folder / name, tiny.unet, tiny.vae, tiny.text_encoders, tiny.family, None, tiny.prediction_type
    )
    if folder not in folders.models["checkpoints"]:
        folders.models["checkpoints"] = [*folders.models["checkpoints"], folder]
    return name


def hypernetwork_module(width: int, structure: list[float], layer_norm: bool, seed: int) -> dict[str, Any]:
    """One A1111 HypernetworkModule state dict: a Sequential named `linear` of Linear, activation and
    LayerNorm layers, so the indices of the parameter-free activations are skipped in the keys."""
    generator = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}
    index = 0
    for i in range(len(structure) - 1):
        fan_in, fan_out = int(width * structure[i]), int(width * structure[i + 1])
        state[f"linear.{index}.weight"] = torch.randn(fan_out, fan_in, generator=generator) * 0.3
        state[f"linear.{index}.bias"] = torch.randn(fan_out, generator=generator) * 0.1
        index += 1
        if i < len(structure) - 2:
            index += 1  # the activation
        if layer_norm:
            state[f"linear.{index}.weight"] = 1 + 0.1 * torch.randn(fan_out, generator=generator)
            state[f"linear.{index}.bias"] = 0.1 * torch.randn(fan_out, generator=generator)
            index += 1
    return state


def write_hypernetwork(
    path: Path, widths: tuple[int, ...], activation: str = "relu", layer_norm: bool = False
) -> Path:
    """An A1111 hypernetwork .pt (torch.save of its dict, as A1111 writes it) for these context widths."""
    structure = [1.0, 2.0, 1.0]
    data: dict[Any, Any] = {
        width: [
            hypernetwork_module(width, structure, layer_norm, 2 * i),
            hypernetwork_module(width, structure, layer_norm, 2 * i + 1),
        ]
        for i, width in enumerate(widths)
    }
    data.update(
        layer_structure=structure,
        activation_func=activation,
        is_layer_norm=layer_norm,
        weight_initialization="Normal",
        use_dropout=False,
        activate_output=False,
        last_layer_dropout=False,
        name=path.stem,
        step=1000,
        sd_checkpoint="0123456789",
        sd_checkpoint_name="tiny_sd1",
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, str(path))
    return path


def write_diffusers_folder(folder: Path, family: str = "sd1", seed: int = 0) -> Path:
    """The tiny model of `family` as a diffusers folder (model_index.json, unet/, vae/, text_encoder/)."""
    tiny = build_tiny(family, seed=seed)  # type: ignore[arg-type]
    pipeline = {
        "sd1": "StableDiffusionPipeline",
        "sd2": "StableDiffusionPipeline",
        "sdxl": "StableDiffusionXLPipeline",
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline[family]}))
    tiny.unet.save_pretrained(folder / "unet")
    tiny.vae.save_pretrained(folder / "vae")
    for index, encoder in enumerate(tiny.text_encoders):
        encoder.save_pretrained(folder / ("text_encoder" if index == 0 else f"text_encoder_{index + 1}"))
    scheduler = folder / "scheduler"
    scheduler.mkdir(exist_ok=True)
    prediction = "v_prediction" if tiny.prediction_type == "v_prediction" else "epsilon"
    (scheduler / "scheduler_config.json").write_text(json.dumps({"prediction_type": prediction}))
    return folder
