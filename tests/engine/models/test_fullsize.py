"""Full-size SD1.5 / SD2.x / SDXL layouts (built on the meta device: shapes only, no memory) are written with
the real checkpoints' key names and detected back with the reference diffusers/transformers configs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from engine.models.detect import detect_model
from engine.models.keymap import canonical_text_state, text_from_original
from engine.models.save import original_state_dict

from .helpers import save_tiny

SD1_UNET = {"block_out_channels": [320, 640, 1280, 1280], "cross_attention_dim": 768, "attention_head_dim": 8}
SD2_UNET = SD1_UNET | {
    "cross_attention_dim": 1024,
    "attention_head_dim": [5, 10, 20, 20],
    "use_linear_projection": True,
}
SDXL_UNET = {
    "block_out_channels": [320, 640, 1280],
    "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
    "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    "cross_attention_dim": 2048,
    "attention_head_dim": [5, 10, 20],
    "transformer_layers_per_block": [1, 2, 10],
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
CLIP_L = {"hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12, "num_attention_heads": 12}
CLIP_H = {"hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16}
CLIP_G = {"hidden_size": 1280, "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 20}

TEXT_FIELDS = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "hidden_act")


def _meta_models(family: str) -> tuple[Any, Any, list[Any]]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    with torch.device("meta"):
        unet = UNet2DConditionModel(**{"sd1": SD1_UNET, "sd2": SD2_UNET, "sdxl": SDXL_UNET}[family])
        vae = AutoencoderKL(
            block_out_channels=[128, 256, 512, 512],
            down_block_types=["DownEncoderBlock2D"] * 4,
            up_block_types=["UpDecoderBlock2D"] * 4,
            layers_per_block=2,
        )
        clip_l = CLIPTextModel(CLIPTextConfig(**CLIP_L, hidden_act="quick_gelu"))
        if family == "sd1":
            encoders = [clip_l]
        elif family == "sd2":
            encoders = [CLIPTextModel(CLIPTextConfig(**CLIP_H, hidden_act="gelu"))]
        else:
            g = CLIPTextConfig(**CLIP_G, hidden_act="gelu", projection_dim=1280)
            encoders = [clip_l, CLIPTextModelWithProjection(g)]
    return unet, vae, encoders


REAL_KEYS = {
    "sd1": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320, 1, 1),
        "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
        "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight": (1280, 768),
        "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.3.0.skip_connection.weight": (1280, 2560, 1, 1),
        "model.diffusion_model.time_embed.2.weight": (1280, 1280),
        "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
        "first_stage_model.encoder.down.1.block.0.nin_shortcut.weight": (256, 128, 1, 1),
        "cond_stage_model.transformer.text_model.final_layer_norm.weight": (768,),
        "cond_stage_model.transformer.text_model.encoder.layers.11.self_attn.q_proj.weight": (768, 768),
    },
    "sd2": {
        "model.diffusion_model.input_blocks.1.1.proj_in.weight": (320, 320),
        "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight": (3072, 1024),
        "cond_stage_model.model.transformer.resblocks.0.mlp.c_fc.weight": (4096, 1024),
        "cond_stage_model.model.positional_embedding": (77, 1024),
        "cond_stage_model.model.ln_final.bias": (1024,),
    },
    "sdxl": {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "model.diffusion_model.output_blocks.2.1.transformer_blocks.9.ff.net.2.weight": (1280, 5120),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.8.0.skip_connection.weight": (320, 640, 1, 1),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.token_embedding.weight": (49408, 1280),
    },
}


@pytest.mark.parametrize("family", ["sd1", "sd2", "sdxl"])
def test_full_size_layout_and_detection(family: str) -> None:
    unet, vae, encoders = _meta_models(family)
    shapes = {k: tuple(v.shape) for k, v in original_state_dict(unet, vae, encoders, family).items()}  # type: ignore[arg-type]
    for key, shape in REAL_KEYS[family].items():
        assert shapes.get(key) == shape, key
    if family == "sd1":
        # v1-5-pruned-emaonly.safetensors holds 1131 tensors; the one we omit is the CLIP position_ids buffer.
        assert len(shapes) == 1130
    spec = detect_model(shapes, {})
    assert spec.family == family
    per_level = ("attention_head_dim", "transformer_layers_per_block")
    levels = len(unet.config.block_out_channels)
    for name, got in spec.unet_config.items():
        if name == "sample_size":
            continue
        expected = unet.config[name]
        if name in per_level and isinstance(expected, int):
            expected = [expected] * levels
        assert (list(expected) if isinstance(expected, tuple) else expected) == got, name
    assert spec.vae_config is not None
    assert spec.vae_config["block_out_channels"] == [128, 256, 512, 512]
    for te, encoder in zip(spec.text_encoders, encoders, strict=True):
        for name in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "hidden_act",
        ):
            assert te.config[name] == getattr(encoder.config, name), name
        assert te.with_projection == hasattr(encoder, "text_projection")


def test_open_clip_map_agrees_with_diffusers(tmp_path: Path) -> None:
    """Our open_clip → transformers text map matches diffusers' own converter on a real-layout file."""
    from diffusers.loaders.single_file_utils import convert_open_clip_checkpoint
    from safetensors.torch import load_file

    models, path = save_tiny("sdxl", tmp_path)
    state = load_file(str(path))
    prefix = "conditioner.embedders.1.model."
    ours = text_from_original(state, prefix, "open_clip")
    theirs = convert_open_clip_checkpoint(models.text_encoders[1], state, prefix=prefix)
    assert {k.removeprefix("text_model."): v for k, v in theirs.items()}.keys() == ours.keys()
    for key, value in theirs.items():
        assert torch.equal(value, ours[key.removeprefix("text_model.")]), key
    assert ours.keys() == canonical_text_state(models.text_encoders[1]).keys()
