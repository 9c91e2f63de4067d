"""The default model's architecture: SD1.x topology (CLIP text encoder, AutoencoderKL, UNet) at small widths.

The VAE downsamples by 4 (64×64 images, 16×16×4 latents): a 16×16 latent leaves the UNet two downsamplings
to a 4×4 bottom where every 3×3 convolution sees the zero-padded border, which is where absolute position
(what "on the left" means) can come from in a convolutional network.
"""

from __future__ import annotations

from typing import Any

from engine.models.tokenizer import CONTEXT_LENGTH, PAD_SD1, VOCAB_SIZE

TEXT_WIDTH = 32
VAE_CHANNELS = [16, 32, 64, 64]
UNET_CHANNELS = [32, 64, 128]
UNET_HEADS = 4
LATENT_CHANNELS = 4
LATENT_SIZE = 8


def build_vae() -> Any:
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=VAE_CHANNELS,
        down_block_types=["DownEncoderBlock2D"] * len(VAE_CHANNELS),
        up_block_types=["UpDecoderBlock2D"] * len(VAE_CHANNELS),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        mid_block_add_attention=False,
        sample_size=64,
        scaling_factor=0.18215,
    )


def build_text_encoder() -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT_WIDTH,
        intermediate_size=2 * TEXT_WIDTH,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=CONTEXT_LENGTH,
        hidden_act="quick_gelu",
        projection_dim=TEXT_WIDTH,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=PAD_SD1,
    )
    return CLIPTextModel(config)


def build_unet(channels: list[int] | None = None, layers_per_block: int = 1) -> Any:
    from diffusers import UNet2DConditionModel

    channels = channels or UNET_CHANNELS
    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        block_out_channels=channels,
        layers_per_block=layers_per_block,
        down_block_types=["CrossAttnDownBlock2D"] * len(channels),
        up_block_types=["CrossAttnUpBlock2D"] * len(channels),
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=UNET_HEADS,
        norm_num_groups=32,
    )


def count_parameters(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())
