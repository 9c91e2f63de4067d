"""ComfyUI's comfy.sd: the CLIP and VAE classes and the model loaders packs call.

`CLIP` and `VAE` are the very classes that travel on Loom's CLIP and VAE links. The loaders read
SD1.x, SD2.x and SDXL files (single-file checkpoints, VAEs, CLIP-L/OpenCLIP-H/CLIP-G text encoders)
through Loom's loading code; other model families raise Loom's UnsupportedModelError naming the file.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any

# ComfyUI's comfy.sd imports these, so after `import comfy.sd` packs reach them as attributes of the
# `comfy` package (`comfy.sd1_clip.SD1ClipModel`; ComfyUI_IPAdapter_plus uses comfy.model_base.SDXL
# having imported only comfy.sd).
import comfy.clip_vision
import comfy.ldm.models.autoencoder
import comfy.lora
import comfy.model_base
import comfy.model_management
import comfy.model_patcher
import comfy.sd1_clip
import comfy.sd2_clip
import comfy.sdxl_clip
import comfy.utils  # noqa: F401
from engine.diffusion.clip import CLIP
from engine.diffusion.style_model import StyleModel
from engine.diffusion.style_model import load_style_model as _load_style_model
from engine.diffusion.vae import VAE

__all__ = [
    "CLIP",
    "VAE",
    "CLIPType",
    "StyleModel",
    "load_checkpoint",
    "load_checkpoint_guess_config",
    "load_clip",
    "load_gligen",
    "load_style_model",
]


class CLIPType(enum.Enum):
    STABLE_DIFFUSION = 1
    STABLE_CASCADE = 2
    SD3 = 3
    STABLE_AUDIO = 4
    HUNYUAN_DIT = 5
    FLUX = 6
    MOCHI = 7
    LTXV = 8
    HUNYUAN_VIDEO = 9
    PIXART = 10
    COSMOS = 11
    LUMINA2 = 12
    WAN = 13
    HIDREAM = 14
    CHROMA = 15
    ACE = 16
    OMNIGEN2 = 17
    QWEN_IMAGE = 18
    HUNYUAN_IMAGE = 19


def _embeddings(embedding_directory: Any) -> Any:
    return [embedding_directory] if isinstance(embedding_directory, str) else embedding_directory


def load_checkpoint_guess_config(
    ckpt_path: str,
    output_vae: bool = True,
    output_clip: bool = True,
    output_clipvision: bool = False,
    embedding_directory: Any = None,
    output_model: bool = True,
    model_options: dict | None = None,
    te_model_options: dict | None = None,
) -> tuple[Any, CLIP | None, VAE | None, Any]:
    """(MODEL, CLIP, VAE, CLIP vision) of a checkpoint file; with `output_clipvision`, the vision encoder
    an SD2.1 unCLIP checkpoint holds (None for checkpoints without one)."""
    from engine.diffusion import handles

    loaded = handles.load(Path(ckpt_path))
    vision = None
    if output_clipvision:
        from engine.diffusion.clip_vision import embedded_clip_vision

        vision = embedded_clip_vision(ckpt_path)
    clip = None
    if output_clip and loaded.clip is not None:
        clip = loaded.clip.clone()
        clip.embedding_directory = _embeddings(embedding_directory)
    return (
        loaded.model if output_model else None,
        clip,
        loaded.vae if output_vae else None,
        vision,
    )


def load_checkpoint(
    config_path: str | None = None,
    ckpt_path: str | None = None,
    output_vae: bool = True,
    output_clip: bool = True,
    embedding_directory: Any = None,
    state_dict: Any = None,
    config: Any = None,
) -> tuple[Any, CLIP | None, VAE | None]:
    """ComfyUI's config-file loader; Loom detects the architecture itself, so the config is not read."""
    if ckpt_path is None:
        raise ValueError("load_checkpoint: Loom loads checkpoints from files: pass ckpt_path")
    model, clip, vae, _ = load_checkpoint_guess_config(
        ckpt_path, output_vae, output_clip, False, embedding_directory
    )
    return model, clip, vae


def load_clip(
    ckpt_paths: list[str],
    embedding_directory: Any = None,
    clip_type: CLIPType = CLIPType.STABLE_DIFFUSION,
    model_options: dict | None = None,
) -> CLIP:
    """A CLIP from text-encoder files: CLIP-L (SD1.x), OpenCLIP-H (SD2.x), CLIP-G, or CLIP-L + G (SDXL);
    for the flow types (sd3, flux, chroma, pixart, lumina2 — Lumina 2's Gemma 2, Z-Image's Qwen3 —,
    qwen_image, hidream — any of CLIP-L, CLIP-G, T5-XXL, Llama 3.1 —) as ComfyUI's loaders take them."""
    from engine.diffusion.clip_loader import load_clip_files
    from engine.models.flow_families import load_clip as load_flow_clip
    from engine.models.text_encoders import kind_of

    paths = [Path(p) for p in ckpt_paths]
    if clip_type in (CLIPType.STABLE_DIFFUSION, CLIPType.STABLE_CASCADE) and all(
        kind_of(_shapes(p)) in ("clip", None) for p in paths
    ):
        return load_clip_files(list(ckpt_paths), _embeddings(embedding_directory))
    return load_flow_clip(paths, clip_type.name.lower(), _device(model_options))


def load_text_encoder_state_dicts(
    state_dicts: list[dict[str, Any]],
    embedding_directory: Any = None,
    clip_type: CLIPType = CLIPType.STABLE_DIFFUSION,
    model_options: dict | None = None,
) -> CLIP:
    from engine.models.flow_families import load_clip_states

    names = [f"text encoder {i + 1}" for i in range(len(state_dicts))]
    clip = load_clip_states(
        list(zip(names, state_dicts, strict=True)), clip_type.name.lower(), _device(model_options)
    )
    if embedding_directory is not None:
        clip.embedding_directory = _embeddings(embedding_directory)
    return clip


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The tensor shapes of a .safetensors file; empty for other formats (pickles: SD files only)."""
    from engine.models.errors import ModelLoadError
    from engine.models.files import read_header

    try:
        return dict(read_header(path).shapes)
    except (ModelLoadError, OSError, ValueError):
        return {}


def _device(model_options: dict | None) -> str | None:
    """ComfyUI's `model_options["load_device"]` as CLIPLoader's device input ("cpu" or default)."""
    device = (model_options or {}).get("load_device")
    return "cpu" if device is not None and str(device) == "cpu" else None


def load_lora_for_models(
    model: Any, clip: CLIP | None, lora: dict[str, Any], strength_model: float, strength_clip: float
) -> tuple[Any, CLIP | None]:
    """New MODEL and CLIP with a LoRA state dict applied (kohya/A1111 or diffusers/PEFT names), as
    LoraLoader does; a LoRA that fits neither raises Loom's LoraError naming its layers."""
    from engine.diffusion.handles import lora_for_models

    return lora_for_models(lora, model, clip, strength_model, strength_clip)


def load_diffusion_model(unet_path: str, model_options: dict | None = None) -> Any:
    """MODEL of a diffusion-model file: the flow families' split files (SD3, Flux, Chroma, Z-Image,
    Qwen-Image; `model_options["dtype"]` an fp8 dtype stores them in fp8, as UNETLoader's weight_dtype),
    or a file Loom's checkpoint loader reads (a UNet saved with its `model.diffusion_model.` prefix)."""
    from engine.diffusion import handles
    from engine.models import flow_families

    if flow_families.detect(_shapes(Path(unet_path))) is not None:
        dtype = (
            str((model_options or {}).get("dtype", "default")).removeprefix("torch.").replace("float8", "fp8")
        )
        return flow_families.load_diffusion_model(
            Path(unet_path), dtype if dtype.startswith("fp8") else "default"
        )
    return handles.load(Path(unet_path)).model


def load_unet(unet_path: str, dtype: Any = None) -> Any:
    return load_diffusion_model(unet_path)


def load_style_model(ckpt_path: str) -> StyleModel:
    """A T2I-Adapter style model file (StyleModelLoader)."""
    return _load_style_model(ckpt_path)


def load_gligen(ckpt_path: str) -> Any:
    """A GLIGEN file in ComfyUI's layout (GLIGENLoader); its module is `.model`."""
    from engine.diffusion.gligen import load_gligen_file

    return load_gligen_file(ckpt_path)
