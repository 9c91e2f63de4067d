"""Load SD checkpoints (original-layout single files or diffusers folders) into diffusers models.

Imports torch, diffusers and transformers lazily: importing this module is cheap.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detect import (
    VAE_PREFIX,
    VAE_SCALING,
    Family,
    ModelSpec,
    PredictionType,
    TextEncoderSpec,
    detect_model,
)
from .errors import ModelLoadError, UnsupportedModelError
from .files import load_state_dict
from .tokenizer import PAD_OPEN_CLIP, PAD_SD1, tokenize

if TYPE_CHECKING:
    import torch


@dataclass
class LoadedCheckpoint:
    """The models of one checkpoint. `text_encoders[i]` pads its prompts with `pad_ids[i]`."""

    family: Family
    prediction_type: PredictionType
    unet: Any
    vae: Any | None
    text_encoders: list[Any]
    pad_ids: list[int]
    vae_scaling_factor: float
    metadata: dict[str, str] = field(default_factory=dict)

    def tokenize(self, text: str) -> list[list[int]]:
        """77 CLIP ids for `text`, padded as each text encoder expects, one list per encoder."""
        return [tokenize(text, pad) for pad in self.pad_ids]


def load_checkpoint(path: str | Path, dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """Load a .safetensors/.ckpt/.pt single-file checkpoint or a diffusers folder.

    Raises `CorruptModelError` for damaged files and `UnsupportedModelError` for files that are not
    SD1.x/SD2.x/SDXL checkpoints (both are `ModelLoadError`s).
    """
    path = Path(path)
    if path.is_dir():
        return load_diffusers_folder(path, dtype)
    state, metadata = load_state_dict(path)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    spec = detect_model(shapes, metadata, state.__getitem__)
    try:
        return build_from_state_dict(spec, state, metadata, dtype)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path}: detected {spec.family} but its weights do not fit: {exc}"
        ) from exc


def build_from_state_dict(
    spec: ModelSpec,
    state: dict[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
) -> LoadedCheckpoint:
    """Build the diffusers/transformers models described by `spec` and fill them from `state`."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint

    unet = UNet2DConditionModel(**spec.unet_config)
    _fill(unet, convert_ldm_unet_checkpoint(state, spec.unet_config), "UNet")
    vae = None
    if spec.vae_config is not None:
        vae_state = {k: v for k, v in state.items() if k.startswith(VAE_PREFIX)}
        vae = AutoencoderKL(**spec.vae_config)
        _fill(vae, convert_ldm_vae_checkpoint(vae_state, spec.vae_config), "VAE")
    encoders = [_build_text_encoder(te, state) for te in spec.text_encoders]
    models = [m for m in (unet, vae, *encoders) if m is not None]
    for model in models:
        model.eval().requires_grad_(False)
        if dtype is not None:
            model.to(dtype)
    return LoadedCheckpoint(
        family=spec.family,
        prediction_type=spec.prediction_type,
        unet=unet,
        vae=vae,
        text_encoders=encoders,
        pad_ids=[te.pad_id for te in spec.text_encoders],
        vae_scaling_factor=VAE_SCALING[spec.family],
        metadata=dict(metadata or {}),
    )


def _build_text_encoder(te: TextEncoderSpec, state: dict[str, torch.Tensor]) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .keymap import text_from_original, text_state_for_model

    config = CLIPTextConfig(**te.config)
    model = CLIPTextModelWithProjection(config) if te.with_projection else CLIPTextModel(config)
    canonical = text_from_original(state, te.prefix, te.layout)
    _fill(model, text_state_for_model(canonical, model), f"text encoder {te.prefix}")
    return model


def _fill(model: Any, state: dict[str, Any], what: str) -> None:
    """Load `state` into `model`, requiring every persistent weight to be present with the right shape."""
    wanted = {k for k in model.state_dict() if not k.endswith("position_ids")}
    missing = sorted(wanted - state.keys())
    if missing:
        raise UnsupportedModelError(
            f"{what}: {len(missing)} weights missing from the file, e.g. {missing[:3]}"
        )
    model.load_state_dict({k: v for k, v in state.items() if k in wanted}, strict=False)


_PIPELINES: dict[str, Family] = {
    "StableDiffusionPipeline": "sd1",
    "StableDiffusionImg2ImgPipeline": "sd1",
    "StableDiffusionXLPipeline": "sdxl",
    "StableDiffusionXLImg2ImgPipeline": "sdxl",
}


def load_diffusers_folder(folder: str | Path, dtype: torch.dtype | None = None) -> LoadedCheckpoint:
    """Load a diffusers-format folder (`model_index.json` with unet/vae/text_encoder subfolders), offline."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise UnsupportedModelError(f"{folder}: a folder model needs model_index.json; none found")
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{index_path}: cannot read: {exc}") from exc
    family = _PIPELINES.get(index.get("_class_name", ""))
    if family is None:
        raise UnsupportedModelError(
            f"{folder}: pipeline {index.get('_class_name')!r} is not SD1.x/SD2.x/SDXL"
        )

    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    options: dict[str, Any] = {"local_files_only": True}
    if dtype is not None:
        options["torch_dtype"] = dtype
    try:
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", **options)
        vae = AutoencoderKL.from_pretrained(folder / "vae", **options) if (folder / "vae").is_dir() else None
        encoders: list[Any] = []
        pad_ids = []
        for name in ("text_encoder", "text_encoder_2"):
            if (folder / name).is_dir():
                cfg = json.loads((folder / name / "config.json").read_text())
                projected = "WithProjection" in "".join(cfg.get("architectures") or [])
                cls = CLIPTextModelWithProjection if projected else CLIPTextModel
                encoders.append(cls.from_pretrained(folder / name, **options))
                pad_ids.append(PAD_SD1 if cfg.get("hidden_act") == "quick_gelu" else PAD_OPEN_CLIP)
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{folder}: cannot load diffusers folder: {exc}") from exc
    if family == "sd1" and pad_ids == [PAD_OPEN_CLIP]:
        family = "sd2"
    if family == "sdxl" and pad_ids == [PAD_OPEN_CLIP]:
        family = "sdxl_refiner"
    for model in (unet, vae, *encoders):
        if model is not None:
            model.eval().requires_grad_(False)
    return LoadedCheckpoint(
        family=family,
        prediction_type=_scheduler_prediction(folder),
        unet=unet,
        vae=vae,
        text_encoders=encoders,
        pad_ids=pad_ids,
        vae_scaling_factor=float(vae.config.scaling_factor) if vae is not None else VAE_SCALING[family],
        metadata={},
    )


def _scheduler_prediction(folder: Path) -> PredictionType:
    config = folder / "scheduler" / "scheduler_config.json"
    if config.is_file() and json.loads(config.read_text()).get("prediction_type") == "v_prediction":
        return "v_prediction"
    return "eps"
