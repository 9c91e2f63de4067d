"""Qwen-Image Edit on the tiny Qwen-Image stand-ins (tests/nodes/flow_fixtures_new.py): ComfyUI_examples'
`qwen_image_edit_basic_example` graph in API form, and transformers' whole Qwen2.5-VL model rebuilt from
the stand-in text-encoder file, the reference diffusers' QwenImageEditPipeline encodes prompts with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures_new import TINY_VISION


def qwen_edit_workflow(seed: int = 1, image: str = "input.png", steps: int = 2) -> dict[str, Any]:
    """ComfyUI_examples' qwen_image_edit_basic_example (CFGNorm, ModelSamplingAuraFlow 3.1, cfg 4, euler),
    at 64×64 and a few steps."""
    edit = "TextEncodeQwenImageEdit"
    return {
        "10": {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
        "61": {
            "class_type": "CLIPLoader",
            "inputs": {
                "clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                "type": "qwen_image",
                "device": "default",
            },
        },
        "12": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "qwen_image_bf16.safetensors", "weight_dtype": "default"},
        },
        "67": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["12", 0], "shift": 3.1}},
        "64": {"class_type": "CFGNorm", "inputs": {"model": ["67", 0], "strength": 1.0}},
        "41": {"class_type": "LoadImage", "inputs": {"image": image}},
        "60": {
            "class_type": edit,
            "inputs": {
                "clip": ["61", 0],
                "prompt": "make the fox wear a hat",
                "vae": ["10", 0],
                "image": ["41", 0],
            },
        },
        "63": {
            "class_type": edit,
            "inputs": {"clip": ["61", 0], "prompt": " ", "vae": ["10", 0], "image": ["41", 0]},
        },
        "66": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "65": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 4.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["64", 0],
                "positive": ["60", 0],
                "negative": ["63", 0],
                "latent_image": ["66", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["65", 0], "vae": ["10", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "edit"}},
    }


def qwen25_vl_from_file(path: Path) -> Any:
    """transformers' Qwen2_5_VLForConditionalGeneration with the stand-in file's weights (ComfyUI's
    `model.…` and `visual.…` keys mapped to `model.language_model.…` and `model.visual.…`)."""
    from safetensors.torch import load_file
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    state = {k: v.float() for k, v in load_file(str(path)).items()}
    hidden = state["model.embed_tokens.weight"].shape[1]
    text = {
        "vocab_size": state["model.embed_tokens.weight"].shape[0],
        "hidden_size": hidden,
        "intermediate_size": state["model.layers.0.mlp.gate_proj.weight"].shape[0],
        "num_hidden_layers": 2,
        "num_attention_heads": hidden // 128,
        "num_key_value_heads": state["model.layers.0.self_attn.k_proj.weight"].shape[0] // 128,
        "rms_norm_eps": 1e-6,
        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    }
    config = Qwen2_5_VLConfig(text_config=text, vision_config={**TINY_VISION, "out_hidden_size": hidden})
    model = Qwen2_5_VLForConditionalGeneration(config)
    mapped = {}
    for key, value in state.items():
        if key.startswith("visual."):
            mapped["model." + key] = value
        elif key.startswith("model."):
            mapped["model.language_model." + key[len("model.") :]] = value
    missing, _ = model.load_state_dict(mapped, strict=False)
    assert missing == ["lm_head.weight"], missing
    return model.eval()


def processor() -> Any:
    """Qwen2-VL's processor as the edit pipeline uses it: Loom's Qwen2.5 tokenizer and the (PIL) image
    processor with its default CLIP normalisation and 28-pixel grid."""
    from transformers import Qwen2VLImageProcessor
    from transformers.models.qwen2_vl.processing_qwen2_vl import Qwen2VLProcessor
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from engine.models.tokenizer import qwen

    return Qwen2VLProcessor(
        image_processor=Qwen2VLImageProcessor(),
        tokenizer=qwen.tokenizer(),
        video_processor=Qwen2VLVideoProcessor(),
    )


def random_picture(width: int, height: int, seed: int) -> Any:
    """A random RGB picture as 8-bit PIL and as the IMAGE tensor [1, H, W, 3] with the same values."""
    import numpy as np
    from PIL import Image

    generator = np.random.default_rng(seed)
    pixels = generator.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels), torch.from_numpy(pixels.astype(np.float32) / 255.0)[None]
