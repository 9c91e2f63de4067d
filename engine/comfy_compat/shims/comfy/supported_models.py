"""ComfyUI's comfy.supported_models: one config class per model family, and `models`, the list
ComfyUI's detection walks in order.

The classes of the families Loom loads (SD15, SD20, SD21UnclipL/H, SDXL, SDXLRefiner, SSD1B, the
KOALA and Vega SDXL variants, the InstructPix2Pix ones, SD3, Flux, FluxSchnell, Chroma, ChromaRadiance,
Lumina2 for Z-Image and Lumina Image 2.0, HiDream, QwenImage) are the configs Loom's models carry, so
`isinstance(model.model.model_config, comfy.supported_models.SDXL)` answers truthfully. The classes
defined here describe families Loom does not load (for packs that test against them: the answer is
False for every Loom model); `models` lists all of them, and comfy.model_detection reads it at call
time, so a pack may swap it as in ComfyUI.
"""

# ComfyUI's configs are classes whose dict and list attributes packs read and override per class;
# instances copy what they change (BASE.__init__).
# ruff: noqa: RUF012

from __future__ import annotations

from typing import Any

from engine.diffusion import model_configs
from engine.diffusion.latent_formats import SD15 as _SD15Format
from engine.diffusion.latent_formats import SDXL as _SDXLFormat
from engine.diffusion.model_configs import BASE as _BASE
from engine.diffusion.model_configs import (
    KOALA_1B,
    KOALA_700M,
    SD3,
    SD15,
    SD20,
    SDXL,
    SSD1B,
    Chroma,
    ChromaRadiance,
    Flux,
    FluxSchnell,
    HiDream,
    Lumina2,
    QwenImage,
    SD15_instructpix2pix,
    SD21UnclipH,
    SD21UnclipL,
    SDXL_instructpix2pix,
    SDXLRefiner,
    Segmind_Vega,
)

# Imported as ComfyUI's module imports them, so `comfy.sd1_clip` (...) is reachable after it.
from . import sd1_clip, sd2_clip, sdxl_clip, supported_models_base  # noqa: F401
from .text_encoders import sd3_clip  # noqa: F401

__all__ = [
    "KOALA_1B",
    "KOALA_700M",
    "SD3",
    "SD15",
    "SD20",
    "SDXL",
    "SSD1B",
    "AuraFlow",
    "Chroma",
    "ChromaRadiance",
    "Flux",
    "FluxSchnell",
    "GenmoMochi",
    "HiDream",
    "HunyuanDiT",
    "Lumina2",
    "PixArtAlpha",
    "PixArtSigma",
    "QwenImage",
    "SD15_instructpix2pix",
    "SD21UnclipH",
    "SD21UnclipL",
    "SDXLRefiner",
    "SDXL_instructpix2pix",
    "SD_X4Upscaler",
    "SVD_img2vid",
    "Segmind_Vega",
    "Stable_Zero123",
    "models",
    "supported_models_base",
]  # fmt: skip


class SVD_img2vid(_BASE):
    unet_config = {"model_channels": 320, "in_channels": 8, "use_linear_in_transformer": True,
                   "transformer_depth": [1, 1, 1, 1, 1, 1, 0, 0], "context_dim": 1024, "adm_in_channels": 768,
                   "use_temporal_attention": True, "use_temporal_resblock": True}  # fmt: skip
    latent_format = _SD15Format
    sampling_settings = {"sigma_max": 700.0, "sigma_min": 0.002}


class Stable_Zero123(_BASE):
    unet_config = {**SD15.unet_config, "in_channels": 8}
    unet_extra_config = {"num_heads": 8, "num_head_channels": -1}
    required_keys = {"cc_projection.weight": None, "cc_projection.bias": None}
    latent_format = _SD15Format


class SD_X4Upscaler(SD20):
    unet_config = {**SD20.unet_config, "model_channels": 256, "in_channels": 7}
    loom_family = None  # type: ignore[assignment]  # an SD2 layout Loom does not load


class AuraFlow(_BASE):
    unet_config = {"cond_seq_dim": 2048}
    sampling_settings = {"multiplier": 1.0, "shift": 1.73}
    unet_extra_config = {}
    latent_format = _SDXLFormat


class PixArtAlpha(_BASE):
    unet_config = {"image_model": "pixart_alpha"}
    sampling_settings = {"beta_schedule": "sqrt_linear", "linear_start": 0.0001, "linear_end": 0.02,
                         "timesteps": 1000}  # fmt: skip
    unet_extra_config = {}
    latent_format: Any = _SD15Format


class PixArtSigma(PixArtAlpha):
    unet_config = {"image_model": "pixart_sigma"}
    latent_format = _SDXLFormat


class HunyuanDiT(_BASE):
    unet_config = {"image_model": "hydit"}
    sampling_settings = {"linear_start": 0.00085, "linear_end": 0.018}
    latent_format = _SDXLFormat


class GenmoMochi(_BASE):
    """Mochi's latent format (12 channels, per-channel statistics) is not in Loom: `latent_format` is None."""

    unet_config = {"image_model": "mochi_preview"}
    sampling_settings = {"multiplier": 1.0, "shift": 6.0}
    unet_extra_config = {}
    latent_format = None


models: list[type[_BASE]] = [
    Stable_Zero123, *model_configs.MODELS[:8], SD_X4Upscaler, *model_configs.MODELS[8:],
    AuraFlow, PixArtAlpha, PixArtSigma, HunyuanDiT, GenmoMochi, SVD_img2vid,
]  # fmt: skip
