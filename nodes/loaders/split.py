"""Split-file loaders for the newer families (ComfyUI's UNETLoader, CLIPLoader, DualCLIPLoader,
TripleCLIPLoader): a diffusion model from models/diffusion_models (or models/unet) and text encoders
from models/text_encoders (or models/clip), each detected from its keys and shapes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from engine import folders
from engine.diffusion.fp8 import WEIGHT_DTYPES
from engine.native import Clip, Input, Model, Node
from nodes.loaders.checkpoints import model_files

# ComfyUI 0.3.64's type lists, plus newer ComfyUI's flux2 (Flux.2 dev and Klein) and flux3 (Flux 3);
# Loom loads the flow families among them (engine.models.flow_families).
CLIP_TYPES = (
    "stable_diffusion",
    "stable_cascade",
    "sd3",
    "stable_audio",
    "mochi",
    "ltxv",
    "pixart",
    "cosmos",
    "lumina2",
    "wan",
    "hidream",
    "chroma",
    "ace",
    "omnigen2",
    "qwen_image",
    "hunyuan_image",
    "flux2",
    "flux3",
)
DUAL_CLIP_TYPES = ("sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image")
DEVICE = Input(
    "Where the text encoder runs; cpu keeps it off the GPU.",
    choices=("default", "cpu"),
    extra={"advanced": True},  # ComfyUI's front end folds it away with the advanced inputs
)


def diffusion_model_files() -> list[str]:
    return model_files("diffusion_models")


def text_encoder_files() -> list[str]:
    return model_files("text_encoders")


def _text_encoder(name: str) -> Path:
    return folders.current().model_path("text_encoders", name)


class UNETLoader(Node):
    """Load a diffusion model (SD3/SD3.5, Flux.1, Z-Image, Qwen-Image, Chroma) without text encoders or
    VAE. fp8 weight dtypes keep the weights in 8 bits and upcast each layer as it runs. An SD1.x/SD2.x/SDXL
    UNet in the original layout (`model.diffusion_model.*`, what ModelSave writes) loads as a checkpoint
    without CLIP and VAE, and a Lotus-D UNet (diffusers or original layout) as ComfyUI's IMG_TO_IMG model,
    both at Loom's usual dtype (weight_dtype applies to the flow families)."""

    display_name = "Load Diffusion Model"
    category = "advanced/loaders"

    def run(
        self,
        unet_name: Annotated[str, Input("The diffusion model file.", choices=diffusion_model_files)],
        weight_dtype: Annotated[
            str, Input("How the weights are stored in memory.", choices=WEIGHT_DTYPES)
        ] = "default",
    ) -> Model:
        from engine.models import lotus
        from engine.models.detect import UNET_PREFIX
        from engine.models.files import open_state_dict, read_header
        from engine.models.flow_families import load_diffusion_model

        path = folders.current().model_path("diffusion_models", unet_name)
        shapes = read_header(path).shapes if path.suffix.lower() in (".safetensors", ".sft") else {}
        if lotus.layout_of(shapes) is not None:
            return lotus.load_diffusion_model(path, open_state_dict(path)[0], shapes)
        if any(key.startswith(UNET_PREFIX) for key in shapes):
            from engine.diffusion import handles

            return handles.load(path).model
        return load_diffusion_model(path, weight_dtype)


# Types whose text encoders are Stable Diffusion's CLIPs (CLIP-L: SD1.x, OpenCLIP-H: SD2.x, CLIP-G alone:
# the SDXL refiner, CLIP-L with CLIP-G: SDXL), as CLIPSave writes them.
SD_CLIP_TYPES = ("stable_diffusion", "sdxl")


def _clip_or_unknown(path: Path) -> bool:
    """Whether a file is a CLIP text encoder (or not a .safetensors file Loom can tell): the other kinds
    go to the flow families' loader whatever the type, as ComfyUI's loader tells them by their keys."""
    from engine.models.files import read_header
    from engine.models.text_encoders import kind_of

    if path.suffix.lower() not in (".safetensors", ".sft"):
        return True
    return kind_of(read_header(path).shapes) in ("clip", None)


def _load(names: list[str], clip_type: str, device: str | None = None) -> Clip:
    from engine.models.flow_families import load_clip

    paths = [_text_encoder(n) for n in names]
    if clip_type in SD_CLIP_TYPES and all(_clip_or_unknown(p) for p in paths):
        from engine.diffusion.clip import loom_embedding_folders
        from engine.diffusion.clip_loader import load_clip_files

        clip = load_clip_files(list(paths), loom_embedding_folders)
        clip.device = device
        return clip
    return load_clip(paths, clip_type, device)


class CLIPLoader(Node):
    """Load one text encoder as the CLIP of a model type (sd3: any of CLIP-L, CLIP-G, T5-XXL;
    stable_diffusion: SD1.x's CLIP-L, SD2.x's OpenCLIP-H or the SDXL refiner's CLIP-G)."""

    display_name = "Load CLIP"
    category = "advanced/loaders"

    def run(
        self,
        clip_name: Annotated[str, Input("The text encoder file.", choices=text_encoder_files)],
        type: Annotated[
            str, Input("The model family it conditions.", choices=CLIP_TYPES)
        ] = "stable_diffusion",
        device: Annotated[str | None, DEVICE] = None,
    ) -> Clip:
        return _load([clip_name], type, device)


class DualCLIPLoader(Node):
    """Load two text encoders as one CLIP: sdxl (CLIP-L and CLIP-G), sd3 (two of CLIP-L, CLIP-G, T5-XXL),
    flux (CLIP-L and T5-XXL)."""

    display_name = "DualCLIPLoader"
    category = "advanced/loaders"

    def run(
        self,
        clip_name1: Annotated[str, Input("The first text encoder file.", choices=text_encoder_files)],
        clip_name2: Annotated[str, Input("The second text encoder file.", choices=text_encoder_files)],
        type: Annotated[str, Input("The model family they condition.", choices=DUAL_CLIP_TYPES)] = "sdxl",
        device: Annotated[str | None, DEVICE] = None,
    ) -> Clip:
        return _load([clip_name1, clip_name2], type, device)


class TripleCLIPLoader(Node):
    """Load SD3's three text encoders (CLIP-L, CLIP-G, T5-XXL) as one CLIP."""

    display_name = "TripleCLIPLoader"
    category = "advanced/loaders"

    def run(
        self,
        clip_name1: Annotated[str, Input("CLIP-L.", choices=text_encoder_files)],
        clip_name2: Annotated[str, Input("CLIP-G.", choices=text_encoder_files)],
        clip_name3: Annotated[str, Input("T5-XXL.", choices=text_encoder_files)],
    ) -> Clip:
        return _load([clip_name1, clip_name2, clip_name3], "sd3")
