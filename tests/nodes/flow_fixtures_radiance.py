"""Tiny Chroma Radiance stand-ins in ComfyUI's key layout (random weights), its T5, and the template's graph.

The file is a tiny Chroma's reference weights without `img_in` and `final_layer`, plus `img_in_patch` (a
16×16 patch convolution of RGB) and the pixel decoder's `nerf_*` weights; `x0=True` adds the empty
`__x0__` tensor of the x0 variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save, t5_file_state, tiny_t5
from tests.nodes.flow_fixtures_new import chroma_to_comfy, tiny_chroma_transformer

PATCH = 16


def nerf_state(
    token_width: int, width: int, depth: int, ratio: int, freqs: int, final: str, generator: torch.Generator
) -> dict[str, torch.Tensor]:
    """Random pixel-decoder weights under the reference names."""

    def rand(*shape: int, std: float = 0.05) -> torch.Tensor:
        return torch.randn(*shape, generator=generator) * std

    out = {
        "nerf_image_embedder.embedder.0.weight": rand(width, 3 + freqs * freqs, std=0.3),
        "nerf_image_embedder.embedder.0.bias": rand(width),
    }
    for i in range(depth):
        out[f"nerf_blocks.{i}.param_generator.weight"] = rand(3 * width * width * ratio, token_width)
        out[f"nerf_blocks.{i}.param_generator.bias"] = rand(3 * width * width * ratio, std=0.5)
        out[f"nerf_blocks.{i}.norm.scale"] = 1.0 + rand(width)
    if final == "conv":
        out["nerf_final_layer_conv.norm.scale"] = 1.0 + rand(width)
        out["nerf_final_layer_conv.conv.weight"] = rand(3, width, 3, 3, std=0.1)
        out["nerf_final_layer_conv.conv.bias"] = rand(3)
    else:
        out["nerf_final_layer.norm.scale"] = 1.0 + rand(width)
        out["nerf_final_layer.linear.weight"] = rand(3, width, std=0.2)
        out["nerf_final_layer.linear.bias"] = rand(3)
    return out


def tiny_radiance_state(
    seed: int = 0, context: int = 32, final: str = "conv", x0: bool = False
) -> dict[str, torch.Tensor]:
    """A tiny Chroma Radiance (one double and one single block, 128 wide; head 8 wide, depth 2)."""
    backbone = tiny_chroma_transformer(seed, context=context)
    hidden = backbone.config.num_attention_heads * backbone.config.attention_head_dim
    state = {
        k: v
        for k, v in chroma_to_comfy(backbone.state_dict(), 1, 1).items()
        if not k.startswith(("img_in.", "final_layer."))
    }
    generator = torch.Generator().manual_seed(seed + 1000)
    state["img_in_patch.weight"] = torch.randn(hidden, 3, PATCH, PATCH, generator=generator) * 0.05
    state["img_in_patch.bias"] = torch.randn(hidden, generator=generator) * 0.05
    state.update(nerf_state(hidden, 8, 2, 2, 3, final, generator))
    if x0:
        state["__x0__"] = torch.zeros(0)
    return state


def write_radiance_files(models: Path, x0: bool = True) -> dict[str, Any]:
    """The template's files: chroma-radiance-x0 (or chroma-radiance) and t5xxl_fp8_e4m3fn_scaled's name."""
    t5 = tiny_t5(51)
    name = "chroma-radiance-x0.safetensors" if x0 else "chroma-radiance.safetensors"
    state = tiny_radiance_state(52, context=t5.config.d_model, x0=x0)
    _save(models / "diffusion_models" / name, state, dtype=None)
    _save(models / "text_encoders" / "t5xxl_fp8_e4m3fn_scaled.safetensors", t5_file_state(t5))
    return {"state": state, "t5": t5, "name": name}


def radiance_workflow(
    seed: int = 1, unet: str = "chroma-radiance-x0.safetensors", tile: int = -1
) -> dict[str, Any]:
    """The template's graph in API form at 32×32: UNETLoader, CLIPLoader type chroma, T5TokenizerOptions,
    ChromaRadianceOptions, ModelSamplingAuraFlow 1, CFGGuider 3.5, euler, BetaSamplingScheduler,
    EmptyChromaRadianceLatentImage, VAELoader pixel_space."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {
            "class_type": "CLIPLoader",
            "inputs": {
                "clip_name": "t5xxl_fp8_e4m3fn_scaled.safetensors",
                "type": "chroma",
                "device": "default",
            },
        },
        "3": {
            "class_type": "T5TokenizerOptions",
            "inputs": {"clip": ["2", 0], "min_padding": 0, "min_length": 0},
        },
        "4": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "tiny bakers and a croissant", "clip": ["3", 0]},
        },
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "low quality, blurry", "clip": ["3", 0]}},
        "6": {
            "class_type": "ChromaRadianceOptions",
            "inputs": {
                "model": ["1", 0],
                "preserve_wrapper": True,
                "start_sigma": 1.0,
                "end_sigma": 0.0,
                "nerf_tile_size": tile,
            },
        },
        "7": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["6", 0], "shift": 1.0}},
        "8": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["7", 0], "positive": ["4", 0], "negative": ["5", 0], "cfg": 3.5},
        },
        "9": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "10": {
            "class_type": "BetaSamplingScheduler",
            "inputs": {"model": ["7", 0], "steps": 3, "alpha": 0.4, "beta": 0.4},
        },
        "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "12": {
            "class_type": "EmptyChromaRadianceLatentImage",
            "inputs": {"width": 32, "height": 32, "batch_size": 1},
        },
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["11", 0],
                "guider": ["8", 0],
                "sampler": ["9", 0],
                "sigmas": ["10", 0],
                "latent_image": ["12", 0],
            },
        },
        "14": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["13", 0], "vae": ["14", 0]}},
        "16": {"class_type": "SaveImage", "inputs": {"images": ["15", 0], "filename_prefix": "radiance"}},
    }
