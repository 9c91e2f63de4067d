"""Tiny random-weight model sets in each real Stable Diffusion topology, for tests and test checkpoints.

A few channels each, two text layers; the token embedding keeps CLIP's 49,408 rows (narrow) so the real
tokenizer's ids fit. Heads follow each family's convention (SD1 UNet: 8 heads; otherwise 64 channels a head),
so the files load even without Loom's `loom.arch` metadata (e.g. as .ckpt). Saved with `save_single_file`,
an SD1 set is about 15 MB in fp32, 8 MB in fp16.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from .detect import Family, PredictionType
from .tokenizer import CONTEXT_LENGTH, VOCAB_SIZE

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

TinyFamily = Literal["sd1", "sd2", "sdxl", "sdxl_refiner"]
TEXT_WIDTH = 64
PROJECTION_DIM = 32


@dataclass
class TinyModels:
    """A tiny model set; pass its fields to `save_single_file`."""

    family: Family
    prediction_type: PredictionType
    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: list[CLIPTextModel | CLIPTextModelWithProjection]


def _text_encoder(layout: str, projection: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=1,
        max_position_embeddings=CONTEXT_LENGTH,
        hidden_act="quick_gelu" if layout == "hf" else "gelu",
        projection_dim=PROJECTION_DIM,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if layout == "hf" else 0,
    )
    return CLIPTextModelWithProjection(config) if projection else CLIPTextModel(config)


def _unet_config(family: TinyFamily) -> dict[str, Any]:
    common: dict[str, Any] = {
        "sample_size": 8,
        "block_out_channels": [32, 64],
        "layers_per_block": 1,
        "norm_num_groups": 32,
    }
    if family == "sd1":
        return common | {
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": TEXT_WIDTH,
            "attention_head_dim": 8,
        }
    if family == "sd2":
        return common | {
            "block_out_channels": [64, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": TEXT_WIDTH,
            "attention_head_dim": [1, 1],
            "use_linear_projection": True,
            "upcast_attention": True,
        }
    sdxl = common | {
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
        "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"],
        "cross_attention_dim": 2 * TEXT_WIDTH,
        "attention_head_dim": [1, 1],
        "transformer_layers_per_block": [1, 2],
        "use_linear_projection": True,
        "addition_embed_type": "text_time",
        "addition_time_embed_dim": 8,
        "projection_class_embeddings_input_dim": PROJECTION_DIM + 6 * 8,
    }
    if family == "sdxl_refiner":  # CLIP-G alone; five size/crop/aesthetic-score embeddings
        return sdxl | {
            "cross_attention_dim": TEXT_WIDTH,
            "projection_class_embeddings_input_dim": PROJECTION_DIM + 5 * 8,
        }
    return sdxl


def build_tiny(family: TinyFamily, seed: int = 0) -> TinyModels:
    """Random tiny SD1.x (eps), SD2.x (v-prediction), SDXL base or refiner (eps) models, deterministic in
    `seed`."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if family not in ("sd1", "sd2", "sdxl", "sdxl_refiner"):
        raise ValueError(f"build_tiny: unknown family {family!r}; use 'sd1', 'sd2', 'sdxl' or 'sdxl_refiner'")
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**_unet_config(family))
    vae = AutoencoderKL(
        block_out_channels=[32, 32],
        down_block_types=["DownEncoderBlock2D"] * 2,
        up_block_types=["UpDecoderBlock2D"] * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=16,
        scaling_factor=0.13025 if family.startswith("sdxl") else 0.18215,
    )
    if family == "sd1":
        encoders = [_text_encoder("hf", projection=False)]
    elif family == "sd2":
        encoders = [_text_encoder("open_clip", projection=False)]
    elif family == "sdxl_refiner":
        encoders = [_text_encoder("open_clip", projection=True)]
    else:
        encoders = [_text_encoder("hf", projection=False), _text_encoder("open_clip", projection=True)]
    # Default initialisations leave biases and norms at exactly 0 or 1; jitter every weight so that a key
    # mapped to the wrong place cannot go unnoticed.
    with torch.no_grad():
        for model in (unet, vae, *encoders):
            for param in model.parameters():
                param.add_(torch.randn_like(param) * 0.05)
            model.eval().requires_grad_(False)
    prediction: PredictionType = "v_prediction" if family == "sd2" else "eps"
    return TinyModels(family, prediction, unet, vae, encoders)
