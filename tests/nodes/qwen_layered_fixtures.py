"""Tiny random-weight Qwen-Image Layered files in ComfyUI's layouts, written by the tests: the diffusion
model (diffusers' names, as `qwen_image_layered_bf16.safetensors` has them, with the timestep's
`addition_t_embedding`), the RGBA Wan-layout VAE (`qwen_image_layered_vae`) and the Qwen2.5-VL text encoder;
and the Image to Layers graph of ComfyUI's `image_qwen_image_layered` template in API form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save
from tests.nodes.flow_fixtures_new import _randomize, qwen_file_state, tiny_qwen, wan_vae_to_comfy

UNET = "qwen_image_layered_bf16.safetensors"
VAE = "qwen_image_layered_vae.safetensors"
TEXT_ENCODER = "qwen_2.5_vl_7b_fp8_scaled.safetensors"


def tiny_layered_transformer(seed: int = 0, context: int = 32) -> Any:
    from diffusers import QwenImageTransformer2DModel

    torch.manual_seed(seed)
    model = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=2,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=context,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
        use_additional_t_cond=True,
        use_layer3d_rope=True,
    )
    # Wider than the other stand-ins' 0.05: the reference image's tokens then sway the layers visibly.
    return _randomize(model, seed, 0.12)


def tiny_rgba_vae(seed: int) -> Any:
    """Qwen-Image's VAE topology at 8 wide on four image channels (RGBA)."""
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=16,
        dim_mult=[1, 2, 4, 4],
        num_res_blocks=2,
        temperal_downsample=[False, True, True],
        input_channels=4,
    )
    # RMS-norm scales stay 1: random ones near 0 would make every picture encode alike.
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, parameter in vae.named_parameters():
            if not name.endswith("gamma"):
                parameter.normal_(0, 0.1)
    return vae.eval()


def write_layered_files(models: Path) -> dict[str, Any]:
    """The template's three files: diffusion model, RGBA VAE, Qwen2.5-VL text encoder (language model)."""
    qwen25 = tiny_qwen("qwen25", 51, hidden=128)
    transformer = tiny_layered_transformer(52, context=qwen25.config.hidden_size)
    vae = tiny_rgba_vae(53)
    state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    _save(models / "diffusion_models" / UNET, state, torch.bfloat16)
    _save(models / "text_encoders" / TEXT_ENCODER, qwen_file_state(qwen25), torch.bfloat16)
    _save(models / "vae" / VAE, wan_vae_to_comfy(vae.state_dict()), torch.bfloat16)
    return {"transformer": transformer, "qwen25": qwen25, "vae": vae}


def layered_workflow(seed: int = 1, image: str | None = "input.png", layers: int = 2) -> dict[str, Any]:
    """The template's Image to Layers subgraph (Text to Layers when `image` is None): the picture encoded
    as every prompt's reference latent, a (layers + 1)-frame latent, ModelSamplingAuraFlow 1, cfg 2.5
    euler/simple, then LatentCut drops frame 0 (the image) and LatentCutToBatch makes the layers a batch
    for VAEDecode; 64×64 and 2 steps."""
    graph: dict[str, Any] = {
        "37": {"class_type": "UNETLoader", "inputs": {"unet_name": UNET, "weight_dtype": "default"}},
        "38": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": TEXT_ENCODER, "type": "qwen_image", "device": "default"},
        },
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "66": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["37", 0], "shift": 1.0}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "a fox on a hill", "clip": ["38", 0]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["38", 0]}},
        "118": {
            "class_type": "EmptyQwenImageLayeredLatentImage",
            "inputs": {"width": 64, "height": 64, "layers": layers, "batch_size": 1},
        },
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 2,
                "cfg": 2.5,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["66", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["118", 0],
            },
        },
        "140": {
            "class_type": "LatentCut",
            "inputs": {"samples": ["3", 0], "dim": "t", "index": 1, "amount": 16384},
        },
        "76": {
            "class_type": "LatentCutToBatch",
            "inputs": {"samples": ["140", 0], "dim": "t", "slice_size": 1},
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["76", 0], "vae": ["39", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "layers"}},
    }
    if image is not None:
        graph.update(
            {
                "74": {"class_type": "LoadImage", "inputs": {"image": image}},
                "71": {"class_type": "VAEEncode", "inputs": {"pixels": ["74", 0], "vae": ["39", 0]}},
                "70": {
                    "class_type": "ReferenceLatent",
                    "inputs": {"conditioning": ["6", 0], "latent": ["71", 0]},
                },
                "69": {
                    "class_type": "ReferenceLatent",
                    "inputs": {"conditioning": ["7", 0], "latent": ["71", 0]},
                },
            }
        )
        graph["3"]["inputs"].update(positive=["70", 0], negative=["69", 0])
    return graph
