"""Load SD checkpoints (original-layout single files or diffusers folders) into diffusers models.

Imports torch, diffusers and transformers lazily: importing this module is cheap.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detect import (
    VAE_PREFIX,
    VAE_SCALING,
    Family,
    ModelSpec,
    PredictionType,
    detect_model,
)
from .errors import ModelLoadError, UnsupportedModelError
from .files import LazyStateDict, open_state_dict
from .tokenizer import PAD_OPEN_CLIP, PAD_SD1, tokenize

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection


@dataclass
class LoadedCheckpoint:
    """The models of one checkpoint, in eval mode with gradients off.

    `unet` is a diffusers `UNet2DConditionModel`, `vae` an `AutoencoderKL` (None when the file has none),
    `text_encoders` transformers `CLIPTextModel`s in the family's order (SDXL: CLIP-L, then CLIP-G as a
    `CLIPTextModelWithProjection`); `text_encoders[i]` pads prompts with `pad_ids[i]`. Every text layer is
    kept: SD1 conditions on the last hidden state, SD2 on the penultimate one passed through
    `final_layer_norm`, SDXL on both encoders' penultimate states (no final norm) concatenated, with
    CLIP-G's projected pooled output as the extra embedding.
    """

    family: Family
    prediction_type: PredictionType
    unet: UNet2DConditionModel
    vae: AutoencoderKL | None
    text_encoders: list[CLIPTextModel | CLIPTextModelWithProjection]
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
    import torch

    # Tensors are read lazily, straight into the target dtype, as the key converters look them up.
    state, metadata = open_state_dict(path, dtype or torch.float32)
    if isinstance(state, LazyStateDict):
        shapes = dict(state.header.shapes)
    else:
        shapes = {k: tuple(v.shape) for k, v in state.items()}
    try:
        spec = detect_model(shapes, metadata, state.__getitem__)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc}") from exc
    text_dtype = None
    if isinstance(state, LazyStateDict):
        text_dtype = kept_text_dtype(state, tuple(te.prefix for te in spec.text_encoders), dtype)
        if text_dtype is not None:
            state.keep = tuple(te.prefix for te in spec.text_encoders)
    try:
        return build_from_state_dict(spec, state, metadata, dtype, text_dtype)
    except UnsupportedModelError as exc:
        raise UnsupportedModelError(f"{path}: {exc}") from exc
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path}: detected {spec.family} but its weights do not fit: {exc}"
        ) from exc


def kept_text_dtype(
    state: LazyStateDict, prefixes: tuple[str, ...], dtype: torch.dtype | None
) -> torch.dtype | None:
    """The half dtype to keep the text encoders' weights in, or None to convert them to `dtype`.

    Computing in fp32 on the CPU, ComfyUI keeps an fp16 text encoder in fp16 and casts each layer's
    weights as it runs: half the memory, nothing to convert at load, and (the conversion being exact)
    the same outputs. Loom does so when every floating text weight in the file has one half dtype.
    """
    import torch

    if (dtype or torch.float32) != torch.float32 or not prefixes:
        return None
    found = {
        state.source_dtype(key)
        for key in state
        if key.startswith(prefixes) and state.source_dtype(key).is_floating_point
    }
    if len(found) == 1 and (kind := found.pop()) in (torch.float16, torch.bfloat16):
        return kind
    return None


def build_from_state_dict(
    spec: ModelSpec,
    state: Mapping[str, torch.Tensor],
    metadata: dict[str, str] | None = None,
    dtype: torch.dtype | None = None,
    text_dtype: torch.dtype | None = None,
) -> LoadedCheckpoint:
    """Build the diffusers/transformers models described by `spec` and fill them from `state`.

    Floating weights become `dtype` (float32 when None). With `text_dtype`, the text encoders' weights
    are stored in it instead and each layer computes in `dtype` (`engine.models.cast`). Models are built
    with empty (meta) parameters and the file's tensors are assigned in, skipping random initialisation
    (13 s for SD1.5's UNet on 2 cores).
    `state` may be lazy (`LazyStateDict`): it is only ever read by key, each tensor once, so a checkpoint
    costs one copy of its weights; tensors already in `dtype` are assigned without copying.
    """
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint, convert_ldm_vae_checkpoint
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from .keymap import text_from_original, text_state_for_model

    target = dtype or torch.float32
    unet = _filled(
        lambda: UNet2DConditionModel(**spec.unet_config),
        lambda m: convert_ldm_unet_checkpoint(state, spec.unet_config),
        "UNet",
        target,
    )
    vae = None
    if spec.vae_config is not None:
        vae_config = spec.vae_config
        vae_state = {k: state[k] for k in state if k.startswith(VAE_PREFIX)}
        vae = _filled(
            lambda: AutoencoderKL(**vae_config),
            lambda m: convert_ldm_vae_checkpoint(vae_state, vae_config),
            "VAE",
            target,
        )
    encoders = [
        _filled(
            partial(
                CLIPTextModelWithProjection if te.with_projection else CLIPTextModel,
                CLIPTextConfig(**te.config),
            ),
            partial(text_state_for_model, text_from_original(state, te.prefix, te.layout)),
            te.prefix,
            text_dtype or target,
        )
        for te in spec.text_encoders
    ]
    if text_dtype is not None and text_dtype != target:
        from .cast import compute_in

        encoders = [compute_in(encoder, target) for encoder in encoders]
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


def _filled(
    build: Callable[[], Any], weights: Callable[[Any], dict[str, Any]], what: str, dtype: torch.dtype
) -> Any:
    """`build()` with empty parameters, then every parameter assigned from `weights(model)`, in eval mode."""
    from accelerate import init_empty_weights
    from transformers.initialization import no_init_weights

    # transformers still runs its init functions on meta tensors (0.9 s for CLIP-L); skip them too.
    with init_empty_weights(include_buffers=False), no_init_weights():
        model = build()
    state = weights(model)
    params = {name for name, _ in model.named_parameters()}
    missing = sorted(params - state.keys())
    if missing:
        raise UnsupportedModelError(
            f"{what}: {len(missing)} weights missing from the file, e.g. {missing[:3]}"
        )
    known = model.state_dict().keys()
    # Lazily read tensors are already `dtype`, aligned and owned: `.to` and `.contiguous` return them as
    # they are and only copy what a key converter left as a strided view or another dtype.
    state = {
        k: v.to(dtype if v.is_floating_point() else v.dtype).contiguous()
        for k, v in state.items()
        if k in known
    }
    model.load_state_dict(state, strict=False, assign=True)
    return model.eval().requires_grad_(False)


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
