"""Loading the flow-matching families (SD3/SD3.5, Flux.1) from the files ComfyUI users have.

* a diffusion-model file (models/diffusion_models, models/unet) — `load_diffusion_model`;
* text-encoder files (models/text_encoders, models/clip) — `load_clip`, by ComfyUI's CLIP type;
* an all-in-one checkpoint (SD3.5 with text encoders and VAE; flux1-dev-fp8 style) — `load_checkpoint`.
Each family is detected from keys and shapes; a file that fits none gets an error naming what was found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models.errors import UnsupportedModelError

Shapes = Mapping[str, tuple[int, ...]]
# The text encoders each family's CLIP takes, by family.
CLIP_TYPES_SUPPORTED = {
    "sd3": ("clip_l", "clip_g", "t5xxl"),
    "flux": ("clip_l", "t5xxl"),
    "chroma": ("t5xxl",),
    "zimage": ("qwen3_4b",),
    "qwen_image": ("qwen25_7b",),
    "flux2": ("qwen3_4b", "qwen3_8b", "mistral3_24b"),
    "qwen_image21": ("qwen3vl_8b",),
    "flux3": ("qwen3vl_4b",),
    "lumina2": ("gemma2_2b",),
    "hidream": ("clip_l", "clip_g", "t5xxl", "llama3_8b"),
}
# Types whose CLIP-only files are SD1.x / SD2.x / SDXL text encoders.
SD_CLIP_TYPES = ("stable_diffusion", "stable_cascade")
# ComfyUI's CLIP types → Loom's family: type lumina2 is Lumina 2's Gemma 2 2B; Z-Image's Qwen3-4B is loaded
# as type lumina2 too (ComfyUI's newer versions send a Qwen3-4B file to Z-Image whatever the type but flux);
# pixart's T5 is Chroma's.
CLIP_TYPE_FAMILIES = {
    "sd3": "sd3",
    "flux": "flux",
    "chroma": "chroma",
    "pixart": "chroma",
    "lumina2": "lumina2",
    "qwen_image": "qwen_image",
    "flux2": "flux2",
    "flux3": "flux3",
    "hidream": "hidream",
}
# Families whose text encoder is another family's CLIP (a checkpoint's CLIP gets that family).
CLIP_FAMILY_OF = {"chroma_radiance": "chroma"}
# Where an all-in-one checkpoint keeps its VAE: `vae.` in ComfyUI's Lumina 2 checkpoints.
CHECKPOINT_VAE_PREFIXES = ("first_stage_model.", "vae.")
TEXT_ENCODER_PREFIXES = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5xxl": "text_encoders.t5xxl.transformer.",
    "gemma2_2b": "text_encoders.gemma2_2b.transformer.",
}


@dataclass(frozen=True)
class Detected:
    family: str  # "sd3", "flux", "flux2", "chroma", "zimage" or "qwen_image"
    prefix: str
    variant: str  # for messages: SD3, SD3.5, Flux.1 dev, Flux.1 schnell


def detect(shapes: Shapes) -> Detected | None:
    """The flow family of a diffusion model or checkpoint from its keys, or None."""
    from engine.models import (
        chroma,
        chroma_radiance,
        flux,
        flux2,
        flux3,
        hidream,
        lumina2,
        qwen_image,
        qwen_image21,
        sd3,
        zimage,
    )

    prefix = hidream.prefix_of(shapes)
    if prefix is not None:
        return Detected("hidream", prefix, hidream.variant(shapes, prefix))
    prefix = flux3.prefix_of(shapes)
    if prefix is not None:
        return Detected("flux3", prefix, flux3.variant(shapes, prefix))
    prefix = flux2.prefix_of(shapes)  # before Flux.1: Flux.2 has its block names too
    if prefix is not None:
        return Detected("flux2", prefix, flux2.variant(shapes, prefix))
    prefix = zimage.prefix_of(shapes)
    if prefix is not None:
        return Detected("zimage", prefix, "Z-Image")
    prefix = lumina2.prefix_of(shapes)
    if prefix is not None:
        return Detected("lumina2", prefix, "Lumina Image 2.0")
    prefix = qwen_image.prefix_of(shapes)
    if prefix is not None:
        layered = qwen_image.is_layered(shapes, prefix)
        return Detected("qwen_image", prefix, "Qwen-Image Layered" if layered else "Qwen-Image")
    prefix = qwen_image21.prefix_of(shapes)
    if prefix is not None:
        return Detected("qwen_image21", prefix, "Qwen-Image 2.1")
    prefix = chroma.prefix_of(shapes)
    if prefix is not None:
        return Detected("chroma", prefix, "Chroma")
    prefix = chroma_radiance.prefix_of(shapes)
    if prefix is not None:
        x0 = prefix + chroma_radiance.X0_MARKER in shapes
        return Detected("chroma_radiance", prefix, "Chroma Radiance x0" if x0 else "Chroma Radiance")
    prefix = sd3.prefix_of(shapes)
    if prefix is not None:
        return Detected("sd3", prefix, sd3.variant(sd3.transformer_config(shapes, prefix)))
    prefix = flux.prefix_of(shapes)
    if prefix is not None:
        return Detected("flux", prefix, flux.variant(shapes, prefix))
    return None


def default_sampling(detected: Detected) -> Any:
    """ComfyUI's sampling settings of each model: SD3 shift 3; Flux dev mu 1.15, schnell 1; Z-Image
    shift 3 with the timestep in [0, 1]; Chroma and Qwen-Image are Flux-type models there
    (ModelSamplingFlux, mu 1.15: Chroma's settings give no shift, Qwen-Image's 1.15 is read as mu,
    not as a discrete-flow shift; measured against ComfyUI 0.3.64's sigmas)."""
    from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow, ModelSamplingFlux

    if detected.family == "sd3":
        return ModelSamplingDiscreteFlow(shift=3.0, multiplier=1000)
    if detected.family == "hidream":  # ComfyUI's HiDream: no sampling settings, i.e. shift 1, × 1000
        return ModelSamplingDiscreteFlow(shift=1.0, multiplier=1000)
    if detected.family in FAMILY_SHIFT:
        return ModelSamplingDiscreteFlow(shift=FAMILY_SHIFT[detected.family], multiplier=1.0)
    if detected.family == "flux2":  # ComfyUI's Flux2: a Flux-type model with shift 2.02
        return ModelSamplingFlux(shift=2.02)
    if detected.family == "qwen_image21":
        return ModelSamplingFlux(shift=QWEN_IMAGE21_MU)
    if detected.family == "flux3":  # diffusers' Flux 3 recipe: a constant shift of 6.93, sigma in [0, 1]
        return ModelSamplingDiscreteFlow(shift=FLUX3_SHIFT, multiplier=1.0)
    dev_like = detected.family in ("chroma", "chroma_radiance", "qwen_image") or "dev" in detected.variant
    return ModelSamplingFlux(shift=1.15 if dev_like else 1.0)


# Layers left out of fp8 storage: diffusers' precision-sensitive embedders of these models.
FP8_KEEP = {
    "zimage": ("t_embedder", "cap_embedder"),
    "lumina2": ("t_embedder", "cap_embedder", "time_caption_embed"),
    "chroma_radiance": ("nerf_image_embedder", "nerf_head.embedder"),
}
# ComfyUI's Lumina2 settings (shift 6, multiplier 1) serve Lumina Image 2.0.
FAMILY_SHIFT = {"zimage": 3.0, "lumina2": 6.0}
# Newer ComfyUI's Qwen-Image 2.1 settings: shift 0.69 read as Flux's mu ("scheduler mu at 1024x1024").
QWEN_IMAGE21_MU = 0.69
FLUX3_SHIFT = 6.93


def compute_dtype(role: str) -> Any:
    """The device manager's dtype, except bf16 in place of fp16 where the device has it: T5 and these
    transformers overflow fp16's range."""
    import torch

    from engine.diffusion.devices import manager

    dtype = manager().dtype(role)  # type: ignore[arg-type]
    if dtype == torch.float16 and manager().device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return dtype


def _read(path: Path) -> tuple[Mapping[str, Any], Shapes]:
    """The file's tensors as a lazy mapping (.safetensors: nothing read yet) and their shapes."""
    from engine.models.files import open_state_dict
    from engine.models.lazy_view import shapes_of

    state, _ = open_state_dict(path)
    return state, shapes_of(state)


def _reading_as(state: Mapping[str, Any], dtype: Any) -> Mapping[str, Any]:
    """A lazy file read with floating tensors converted to `dtype` as they are read (one tensor in flight,
    no full copy in the file's dtype); other mappings as they are."""
    from engine.models.files import LazyStateDict

    if isinstance(state, LazyStateDict):
        return LazyStateDict(state.path, state.header, dtype)
    return state


def build_model(state: Mapping[str, Any], detected: Detected, weight_dtype: str = "default") -> Any:
    """A MODEL (ModelPatcher) for the transformer in `state`; fp8 storage for fp8 weight dtypes or files.

    Each weight is read from the file once, by the key converter, converted as it is read (Linear matrices
    to fp8 when storing in fp8, everything else to the compute dtype) and assigned into the model as it is
    (engine.models.flow_fill), so the peak is the model at its stored size plus one tensor."""
    from engine.diffusion.fp8 import FP8, file_fp8_dtype, store_linear_weights
    from engine.diffusion.latent_formats import latent_format
    from engine.diffusion.model_patcher import ModelPatcher
    from engine.models.int8_convrot import dequantised
    from engine.models.lazy_view import stored_dtypes

    compute = compute_dtype("unet")
    state = dequantised(state, compute)  # ComfyUI's int8 ConvRot files, in any family
    storage = FP8.get(weight_dtype) or file_fp8_dtype(stored_dtypes(state, detected.prefix))
    from engine.models.flow_fill import TypedReader

    loader, cls = _family_classes(detected.family)
    keep = FP8_KEEP.get(detected.family, ())
    reader = _reading_as(state, compute) if storage is None else TypedReader(state, compute, storage, keep)
    transformer = loader(reader, detected.prefix, compute)
    _record_lora_rows(transformer, detected, state)
    if storage is not None:
        store_linear_weights(transformer, storage, keep)
    fmt = latent_format(detected.family, 1.0, {})
    return ModelPatcher(cls(transformer, default_sampling(detected), detected.family, fmt, compute))


def _record_lora_rows(transformer: Any, detected: Detected, state: Mapping[str, Any]) -> None:
    """Let LoRAs in the reference layout find the diffusers weights their rows went to."""
    from importlib import import_module

    from engine.diffusion.lora_flow import record_rows
    from engine.models.lazy_view import shapes_of
    from engine.models.zimage import OTHER_MODELS

    shapes = {
        k.removeprefix(detected.prefix): shape
        for k, shape in shapes_of(state, detected.prefix).items()
        if not OTHER_MODELS(k.removeprefix(detected.prefix))
    }
    module = import_module(f"engine.models.{detected.family}")  # each family's module bears its name
    if detected.family == "chroma_radiance":  # its converter reads the shapes
        record_rows(transformer, module.converter(shapes), shapes)
        return
    config = module.transformer_config(shapes, "") if detected.family in ("flux", "chroma") else {}
    record_rows(transformer, module.converter(config), shapes)


def _family_classes(family: str) -> tuple[Any, Any]:
    """The transformer loader and the MODEL class of a family."""
    from engine.diffusion import (
        flow_flux2,
        flow_flux3,
        flow_hidream,
        flow_lumina2,
        flow_models,
        flow_qwen,
        flow_qwen21,
        flow_radiance,
    )
    from engine.models import (
        chroma,
        chroma_radiance,
        flux,
        flux2,
        flux3,
        hidream,
        lumina2,
        qwen_image,
        qwen_image21,
        sd3,
        zimage,
    )

    return {
        "flux3": (flux3.load_transformer, flow_flux3.Flux3),
        "hidream": (hidream.load_transformer, flow_hidream.HiDream),
        "flux2": (flux2.load_transformer, flow_flux2.Flux2),
        "chroma_radiance": (chroma_radiance.load_transformer, flow_radiance.ChromaRadiance),
        "sd3": (sd3.load_transformer, flow_models.SD3),
        "flux": (flux.load_transformer, flow_models.Flux),
        "chroma": (chroma.load_transformer, flow_models.Chroma),
        "zimage": (zimage.load_transformer, flow_models.ZImage),
        "lumina2": (lumina2.load_transformer, flow_lumina2.Lumina2),
        "qwen_image": (qwen_image.load_transformer, flow_qwen.QwenImage),
        "qwen_image21": (qwen_image21.load_transformer, flow_qwen21.QwenImage21),
    }[family]


def load_diffusion_model(path: Path, weight_dtype: str = "default") -> Any:
    """UNETLoader: a diffusion-model file of a flow family as a MODEL."""
    state, shapes = _read(path)
    detected = detect(shapes)
    if detected is None:
        raise UnsupportedModelError(
            f"{path.name}: not an SD3/SD3.5, Flux.1, Flux.2, Flux 3, Chroma (Radiance), Z-Image, "
            "Lumina Image 2.0, Qwen-Image, Qwen-Image 2.1 or HiDream diffusion model "
            f"(found keys like {', '.join(sorted(shapes)[:3])})"
        )
    try:
        return build_model(state, detected, weight_dtype)
    except (RuntimeError, KeyError, ValueError) as exc:
        raise UnsupportedModelError(
            f"{path.name}: detected {detected.variant} but its weights do not fit: {exc}"
        ) from exc


def clip_handle(encoders: list[Any], family: str, device: str | None = None) -> Any:
    from engine.diffusion.handles import ClipHandle

    order = CLIP_TYPES_SUPPORTED[family]
    encoders = sorted(encoders, key=lambda e: order.index(e.role))
    return ClipHandle(
        tuple(e.model for e in encoders),
        tuple(e.pad_id for e in encoders),
        family,
        roles=tuple(e.role for e in encoders),
        widths=tuple(e.width for e in encoders),
        device=device,
    )


def load_clip(paths: list[Path], clip_type: str, device: str | None = None) -> Any:
    """CLIPLoader / DualCLIPLoader / TripleCLIPLoader: text-encoder files as one CLIP of `clip_type`;
    `device="cpu"` keeps them on the CPU in float32."""
    return load_clip_states([(path.name, _read(path)[0]) for path in paths], clip_type, device)


def load_clip_states(
    named: list[tuple[str, Mapping[str, Any]]], clip_type: str, device: str | None = None
) -> Any:
    """The same from state dicts (`comfy.sd.load_text_encoder_state_dicts`). CLIP files alone with type
    stable_diffusion (or stable_cascade) are SD1.x / SD2.x / SDXL text encoders."""
    import torch

    from engine.models import clip_types, text_encoders
    from engine.models.lazy_view import shapes_of

    read = [(name, state, shapes_of(state)) for name, state in named]
    roles = text_encoders.assign_roles([(name, shapes) for name, _, shapes in read])
    family, roles = clip_types.family_and_roles(clip_type, roles, read[0][2] if len(read) == 1 else {})
    if family is None and clip_type in SD_CLIP_TYPES and all(r in ("clip_l", "clip_g") for r in roles):
        from engine.diffusion.clip import loom_embedding_folders
        from engine.diffusion.clip_loader import clip_from_state_dicts

        states = [dict(s) for _, s, _ in read]
        return clip_from_state_dicts(states, [n for n, _, _ in read], loom_embedding_folders)
    clip_types.check_roles([name for name, _, _ in read], roles, family, clip_type)
    assert family is not None
    dtype = torch.float32 if device == "cpu" else compute_dtype("text")
    loaded = [
        text_encoders.load(_reading_as(state, dtype), "", role, dtype, with_projection=family == "hidream")
        for (_, state, _), role in zip(read, roles, strict=True)
    ]
    if family == "hidream":
        from engine.diffusion.tokens_hidream import note_clip_lengths

        note_clip_lengths(loaded)
    return clip_handle(loaded, family, device)


def load_checkpoint(path: Path, state: Mapping[str, Any], shapes: Shapes, detected: Detected) -> Any:
    """An all-in-one checkpoint: MODEL, CLIP (the text encoders it holds, or None) and VAE (or None)."""
    from engine.diffusion.handles import Checkpoint
    from engine.models import text_encoders

    model = build_model(state, detected)
    dtype = compute_dtype("text")
    clip_family = CLIP_FAMILY_OF.get(detected.family, detected.family)
    encoders = [
        text_encoders.load(_reading_as(state, dtype), prefix, role, dtype)  # type: ignore[arg-type]
        for role, prefix in TEXT_ENCODER_PREFIXES.items()
        if role in CLIP_TYPES_SUPPORTED[clip_family] and text_encoders.kind_of(shapes, prefix) is not None
    ]
    clip = clip_handle(encoders, clip_family) if encoders else None
    has_vae = any(p + "decoder.conv_in.weight" in shapes for p in CHECKPOINT_VAE_PREFIXES)
    vae = vae_from_state(state, path.name) if has_vae else None
    return Checkpoint(model, clip, vae)


def vae_from_state(state: Mapping[str, Any], name: str) -> Any:
    """A VAE from original-layout keys (`first_stage_model.` optional) of a checkpoint that also holds
    other models, through `vae_from_state_dict` (4 or 16 latent channels)."""
    from engine.diffusion.vae import vae_from_state_dict

    own = {
        k.removeprefix("vae."): state[k]
        for k in state
        if not k.startswith(("model.", "text_encoders.", "cond_stage_model.", "conditioner."))
    }
    return vae_from_state_dict(own, {}, name)
