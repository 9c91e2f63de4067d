"""Tiny random-weight Lotus-D UNets in the layouts users have (diffusers, as Comfy-Org ships it; the
original layout, bare and under `model.diffusion_model.`), an SD VAE, and ComfyUI's Lotus depth graph."""

from __future__ import annotations

from pathlib import Path
from typing import Any

LAYOUT_FILES = {
    "diffusers": "lotus-depth-d-v1-1.safetensors",
    "ldm": "lotus_original_layout.safetensors",
    "ldm_prefixed": "lotus_checkpoint_layout.safetensors",
}
VAE_FILE = "vae-ft-mse-840000-ema-pruned.safetensors"


def tiny_lotus_unet(seed: int = 3) -> Any:
    """An SD2-style UNet at small widths (64-channel heads) with Lotus' 4-input class embedding and
    1024-wide context (what LotusConditioning gives)."""
    import torch
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(64, 128),
        layers_per_block=1,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(1, 2),
        use_linear_projection=True,
        class_embed_type="projection",
        projection_class_embeddings_input_dim=4,
        norm_num_groups=32,
    )
    with torch.no_grad():
        for param in unet.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return unet.eval().requires_grad_(False)


def write_lotus_files(root: Path, seed: int = 3) -> dict[str, Any]:
    """models/diffusion_models/ with the same tiny Lotus-D UNet in each layout and models/vae/ with a tiny
    SD VAE (original layout); returns the diffusers UNet and VAE they were written from."""
    from safetensors.torch import save_file

    from engine.models.keymap import unet_to_original, vae_to_original
    from engine.models.tiny import build_tiny

    unet = tiny_lotus_unet(seed)
    state = {k: v.contiguous() for k, v in unet.state_dict().items()}
    original = unet_to_original(state, unet.config)
    layouts = {
        "diffusers": state,
        "ldm": original,
        "ldm_prefixed": {"model.diffusion_model." + k: v for k, v in original.items()},
    }
    (root / "diffusion_models").mkdir(parents=True, exist_ok=True)
    for layout, name in LAYOUT_FILES.items():
        save_file(layouts[layout], str(root / "diffusion_models" / name))
    vae = build_tiny("sd1", seed=seed).vae
    (root / "vae").mkdir(parents=True, exist_ok=True)
    save_file(vae_to_original(vae.state_dict(), vae.config), str(root / "vae" / VAE_FILE))
    return {"unet": unet, "vae": vae}


def lotus_depth_graph(
    image: str, unet: str = LAYOUT_FILES["diffusers"], sigma: float = 999.0
) -> dict[str, Any]:
    """ComfyUI's Lotus depth template (image_lotus_depth_v1_1) in the API format: encode, one Euler step
    from SetFirstSigma's sigma with no noise and Lotus' fixed conditioning, decode, invert, save."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image}},
        "2": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": VAE_FILE}},
        "4": {"class_type": "VAEEncode", "inputs": {"pixels": ["1", 0], "vae": ["3", 0]}},
        "5": {"class_type": "LotusConditioning", "inputs": {}},
        "6": {"class_type": "BasicGuider", "inputs": {"model": ["2", 0], "conditioning": ["5", 0]}},
        "7": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["2", 0], "scheduler": "normal", "steps": 1, "denoise": 1.0},
        },
        "8": {"class_type": "SetFirstSigma", "inputs": {"sigmas": ["7", 0], "sigma": sigma}},
        "10": {"class_type": "DisableNoise", "inputs": {}},
        "11": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "12": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["10", 0],
                "guider": ["6", 0],
                "sampler": ["11", 0],
                "sigmas": ["8", 0],
                "latent_image": ["4", 0],
            },
        },
        "13": {"class_type": "VAEDecode", "inputs": {"samples": ["12", 0], "vae": ["3", 0]}},
        "14": {"class_type": "ImageInvert", "inputs": {"image": ["13", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["14", 0], "filename_prefix": "Lotus_depth"}},
    }
