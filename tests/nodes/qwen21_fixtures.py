"""Tiny random-weight Qwen-Image 2.1 files in ComfyUI's layouts, written by the tests: the diffusion model
(fused `img_mlp.gate_up`, block matrices in int8 ConvRot as the released `*_int8_convrot` files), the
Qwen3-VL text encoder (`model.layers.…`, Qwen3's layer names) and the RGBA VAE in the original layout."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save
from tests.nodes.flow_fixtures_new import _randomize, qwen_file_state, tiny_qwen

LATENT_CHANNELS = 64
CONVROT_GROUP = 16  # the released files use 256; the tiny layers are 32 wide
QUANTISED = re.compile(
    r"transformer_blocks\.\d+\.(attn\.(to_q|to_k|to_v|to_out\.0)|img_mlp\.(gate_up|out))\.weight$"
)


def tiny_transformer(seed: int = 0, context: int = 32) -> Any:
    from diffusers import QwenImage21Transformer2DModel

    model = QwenImage21Transformer2DModel(
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        num_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        context_in_dim=context,
        mlp_ratio=3,
        axes_dims_rope=(4, 6, 6),
    )
    return _randomize(model, seed, 0.05)


def fuse_mlp(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' names → ComfyUI's: each block's gate and up projections as one `gate_up`, gate first."""
    out = {}
    for key, value in state.items():
        if key.endswith("img_mlp.proj.weight"):
            continue
        if key.endswith("img_mlp.gate_layer.weight"):
            up = state[key.replace("gate_layer", "proj")]
            out[key.replace("gate_layer", "gate_up")] = torch.cat([value, up])
        else:
            out[key] = value
    return out


def quantise_convrot(
    state: dict[str, torch.Tensor], group: int = CONVROT_GROUP, pattern: re.Pattern[str] = QUANTISED
) -> dict[str, torch.Tensor]:
    """ComfyUI's int8 ConvRot records: rotated by the group Hadamard matrix, int8 per row with a scale
    (the matrices whose names match `pattern`)."""
    from engine.models.int8_convrot import hadamard

    record = torch.tensor(
        list(json.dumps({"format": "int8_tensorwise", "convrot": True, "convrot_groupsize": group}).encode()),
        dtype=torch.uint8,
    )
    out = {}
    for key, value in state.items():
        if not pattern.search(key):
            out[key] = value
            continue
        rows, cols = value.shape
        rotated = (value.float().reshape(rows, cols // group, group) @ hadamard(group)).reshape(rows, cols)
        scale = rotated.abs().amax(dim=1, keepdim=True).clamp(min=1e-8) / 127
        out[key] = (rotated / scale).round().clamp(-128, 127).to(torch.int8)
        out[key + "_scale"] = scale.float()
        out[key.removesuffix(".weight") + ".comfy_quant"] = record.clone()
    return out


def dequantised_model(state: dict[str, torch.Tensor], seed: int, context: int) -> Any:
    """The diffusers model holding exactly the weights the quantised file stands for."""
    from diffusers.loaders.single_file_utils import convert_qwen_image21_transformer_checkpoint_to_diffusers

    from engine.models.int8_convrot import dequantised

    model = tiny_transformer(seed, context)
    plain = {k: v for k, v in dequantised(state, torch.float32).items()}
    model.load_state_dict(convert_qwen_image21_transformer_checkpoint_to_diffusers(plain))
    return model.eval()


def tiny_vae(seed: int) -> Any:
    from diffusers import AutoencoderKLQwenImage21

    vae = AutoencoderKLQwenImage21(
        base_dim=8,
        decoder_base_dim=12,
        z_dim=LATENT_CHANNELS,
        dim_mult=[1, 2, 2, 2, 2],
        latents_mean=[0.0] * LATENT_CHANNELS,
        latents_std=[1.0] * LATENT_CHANNELS,
    )
    return _randomize(vae, seed, 0.05)


def _original_vae_key(key: str, resnets: dict[str, int]) -> str:
    """diffusers' name → the original (ComfyUI) one: the inverse of engine.models.qwen_vae21.RULES."""
    side = "downsamples" if key.startswith("encoder.") else "upsamples"
    blocks = "down_blocks" if side == "downsamples" else "up_blocks"
    sampler = "downsampler" if side == "downsamples" else "upsampler"
    part = key.split(".")[0]
    key = re.sub(
        rf"^{part}\.{blocks}\.(\d+)\.{sampler}\.",
        lambda m: f"{part}.{side}.{m.group(1)}.{side}.{resnets[part]}.",
        key,
    )
    key = re.sub(rf"^{part}\.{blocks}\.(\d+)\.resnets\.(\d+)\.", rf"{part}.{side}.\1.{side}.\2.", key)
    for new, old in (
        (r"\.norm1\.", ".residual.0."),
        (r"\.conv1\.", ".residual.2."),
        (r"\.norm2\.", ".residual.3."),
        (r"\.conv2\.", ".residual.6."),
        (r"\.conv_shortcut\.", ".shortcut."),
    ):
        key = re.sub(new, old, key)
    key = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.0\.", r"\1.middle.0.", key)
    key = re.sub(r"^(encoder|decoder)\.mid_block\.attentions\.0\.", r"\1.middle.1.", key)
    key = re.sub(r"^(encoder|decoder)\.mid_block\.resnets\.1\.", r"\1.middle.2.", key)
    key = re.sub(r"^(encoder|decoder)\.conv_in\.", r"\1.conv1.", key)
    key = re.sub(r"^(encoder|decoder)\.norm_out\.", r"\1.head.0.", key)
    key = re.sub(r"^(encoder|decoder)\.conv_out\.", r"\1.head.2.", key)
    return re.sub(r"^quant_conv\.", "conv1.", re.sub(r"^post_quant_conv\.", "conv2.", key))


def vae_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The original layout: 3-D convolutions one frame deep."""
    out = {}
    for key, value in state.items():
        original = _original_vae_key(key, {"encoder": 2, "decoder": 3})
        conv3d = value.ndim == 4 and "gamma" not in key and "attentions" not in key
        out[original] = value.unsqueeze(2) if conv3d else value
    return out


VISION = {
    "depth": 3,
    "hidden_size": 64,
    "intermediate_size": 96,
    "num_heads": 16,
    "patch_size": 16,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "num_position_embeddings": 64,
    "deepstack_visual_indexes": [1, 2],  # what engine.models.qwen3vl_vision reads for 3 blocks, 2 mergers
}


def tiny_vision(seed: int, out_width: int = 32) -> Any:
    from engine.models.qwen3vl_vision import build

    return _randomize(build({**VISION, "out_hidden_size": out_width}), seed, 0.05)


def write_files(models: Path, seed: int = 40) -> dict[str, Any]:
    """qwen_image_2.1_int8_convrot (and _turbo), qwen3vl_8b_int8_convrot (language model and vision tower)
    and qwen_image_2.1_vae_bf16."""
    encoder = tiny_qwen("qwen3", seed, hidden=32)
    vision = tiny_vision(seed + 3)
    transformer = tiny_transformer(seed + 1, context=32)
    comfy = quantise_convrot(fuse_mlp({k: v.contiguous() for k, v in transformer.state_dict().items()}))
    for name in ("qwen_image_2.1_int8_convrot", "qwen_image_2.1_turbo_int8_convrot"):
        _save(models / "diffusion_models" / f"{name}.safetensors", comfy, torch.bfloat16)
    _save(
        models / "text_encoders" / "qwen3vl_8b_int8_convrot.safetensors",
        qwen_file_state(encoder) | {"visual." + k: v.contiguous() for k, v in vision.state_dict().items()},
        torch.bfloat16,
    )
    vae = tiny_vae(seed + 2)
    _save(
        models / "vae" / "qwen_image_2.1_vae_bf16.safetensors", vae_to_comfy(vae.state_dict()), torch.bfloat16
    )
    return {"encoder": encoder, "vision": vision, "transformer_state": comfy, "vae": vae}


def t2i_workflow(seed: int = 1, steps: int = 2, width: int = 64, height: int = 64) -> dict[str, Any]:
    """The core of ComfyUI's Qwen-Image 2.1 text-to-image template (its subgraph, enhancer off)."""
    unet = {"unet_name": "qwen_image_2.1_int8_convrot.safetensors", "weight_dtype": "default"}
    clip = {"clip_name": "qwen3vl_8b_int8_convrot.safetensors", "type": "qwen_image", "device": "default"}
    encode = {"clip": ["2", 0], "prompt": "a red fox", "negative_prompt": "", "resolution": 1024}
    sampler = {"seed": seed, "steps": steps, "cfg": 2.0, "sampler_name": "euler", "scheduler": "simple"}
    links = {"model": ["4", 0], "positive": ["5", 0], "negative": ["5", 1], "latent_image": ["6", 0]}
    return {
        "1": {"class_type": "UNETLoader", "inputs": unet},
        "2": {"class_type": "CLIPLoader", "inputs": clip},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_2.1_vae_bf16.safetensors"}},
        "4": {
            "class_type": "QwenImage21Cache",
            "inputs": {"model": ["1", 0], "device": "auto", "dtype": "default"},
        },
        "5": {"class_type": "TextEncodeQwenImage21", "inputs": encode},
        "6": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": 1},
        },
        "7": {"class_type": "KSampler", "inputs": {**sampler, "denoise": 1.0, **links}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "qwen21"}},
    }


def edit_workflow(seed: int = 1, image: str = "input.png", steps: int = 2) -> dict[str, Any]:
    """The core of the image-edit template: the image as reference (vision tower and latent), the latent
    TextEncodeQwenImage21 makes on the image's size."""
    prompt = t2i_workflow(seed, steps)
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": image}}
    prompt["5"]["inputs"] |= {"vae": ["3", 0], "resolution": 64, "images.image_1": ["10", 0]}
    prompt["7"]["inputs"]["latent_image"] = ["5", 2]
    del prompt["6"]
    return prompt
