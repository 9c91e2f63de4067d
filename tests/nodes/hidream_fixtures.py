"""Tiny random-weight HiDream stand-ins in ComfyUI's file layouts, written by the tests (and bench/).

* the transformer: diffusers' `HiDreamImageTransformer2DModel`, whose names are HiDream's released names,
  at one 128-wide head, one double and one single block and four experts;
* CLIP-L (with its text projection, as HiDream's) and CLIP-G at 248 positions ("long" CLIPs), T5 in its
  encoder layout, Llama 3.1 in transformers' causal-LM layout (a full 128,256-token vocabulary, so that the
  real special ids exist, at 64 channels and 3 layers), Flux's 16-channel VAE in the LDM layout;
* a byte-level BPE `tokenizer.json` without merges standing in for Llama 3's (id = byte value).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import (
    CLIP_G_WIDTH,
    CLIP_L_WIDTH,
    JOINT,
    _save,
    clip_file_state,
    t5_file_state,
    tiny_t5,
    tiny_vae16,
    vae_file_state,
)

LLAMA_WIDTH, LLAMA_LAYERS, LLAMA_VOCAB = 64, 3, 128256
LONG_CLIP_POSITIONS = 248
FILES = {
    "clip_l": "clip_l_hidream.safetensors",
    "clip_g": "clip_g_hidream.safetensors",
    "t5xxl": "t5xxl_fp8_e4m3fn_scaled.safetensors",
    "llama": "llama_3.1_8b_instruct_fp8_scaled.safetensors",
}


def tiny_hidream_transformer(seed: int = 0, experts: int = 4, single: int = 1) -> Any:
    from diffusers import HiDreamImageTransformer2DModel

    torch.manual_seed(seed)
    model = HiDreamImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=16,
        num_layers=1,
        num_single_layers=single,
        attention_head_dim=128,
        num_attention_heads=1,
        caption_channels=[JOINT, LLAMA_WIDTH],
        text_emb_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
        num_routed_experts=experts,
        num_activated_experts=2,
        axes_dims_rope=(64, 32, 32),
        max_resolution=(128, 128),
        llama_layers=list(range(1 + single)),
    )
    with torch.no_grad():  # diffusers leaves the gates at a small scale; spread the routing
        for name, parameter in model.named_parameters():
            if name.endswith("gate.weight"):
                parameter.normal_(0.0, 1.0)
    return model.eval()


def hidream_file_state(model: Any) -> dict[str, torch.Tensor]:
    """The transformer's weights as hidream_i1_*.safetensors name them (diffusers' names)."""
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def tiny_long_clip(role: str, seed: int, layers: int = 2) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from engine.models.tokenizer import VOCAB_SIZE

    torch.manual_seed(seed)
    width = CLIP_G_WIDTH if role == "clip_g" else CLIP_L_WIDTH
    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=layers,
        num_attention_heads=width // 64,
        max_position_embeddings=LONG_CLIP_POSITIONS,
        projection_dim=width,
        hidden_act="gelu" if role == "clip_g" else "quick_gelu",
        pad_token_id=0 if role == "clip_g" else 49407,
        bos_token_id=49406,
        eos_token_id=49407,
    )
    return CLIPTextModelWithProjection(config).eval()


def tiny_llama(seed: int) -> Any:
    from transformers import LlamaConfig, LlamaModel

    from engine.models.llama3_encoder import config as llama_config

    torch.manual_seed(seed)
    shapes = {
        "model.embed_tokens.weight": (LLAMA_VOCAB, LLAMA_WIDTH),
        "model.layers.0.mlp.gate_proj.weight": (2 * LLAMA_WIDTH, LLAMA_WIDTH),
        "model.layers.0.self_attn.q_proj.weight": (128, LLAMA_WIDTH),
        "model.layers.0.self_attn.k_proj.weight": (128, LLAMA_WIDTH),
        **{f"model.layers.{i}.input_layernorm.weight": (LLAMA_WIDTH,) for i in range(LLAMA_LAYERS)},
    }
    config = LlamaConfig(**llama_config(shapes, ""))
    config._attn_implementation = "sdpa"
    model = LlamaModel(config).eval()
    with torch.no_grad():  # visible norms, so that a wrong layer shows
        for name, parameter in model.named_parameters():
            if name.endswith("norm.weight"):
                parameter.uniform_(0.5, 1.5)
    return model


def llama_file_state(model: Any) -> dict[str, torch.Tensor]:
    return {"model." + k: v.contiguous() for k, v in model.state_dict().items()}


def write_byte_tokenizer(path: Path) -> None:
    """A byte-level BPE tokenizer.json with no merges: every byte of the text is one token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE(vocab={ch: b for b, ch in _byte_characters().items()}, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))


def _byte_characters() -> dict[int, str]:
    """GPT-2's printable stand-in character for each byte (what byte-level BPE vocabularies spell)."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    shifted = 0
    out = {}
    for byte in range(256):
        if byte in printable:
            out[byte] = chr(byte)
        else:
            out[byte] = chr(256 + shifted)
            shifted += 1
    return out


def write_hidream_files(models: Path) -> dict[str, Any]:
    """HiDream's files under `models` as the templates name them, plus an fp8 copy of the transformer."""
    transformer = tiny_hidream_transformer(seed=1)
    clip_l, clip_g = tiny_long_clip("clip_l", 2), tiny_long_clip("clip_g", 3)
    t5, llama, vae = tiny_t5(4), tiny_llama(5), tiny_vae16(6)
    state = hidream_file_state(transformer)
    _save(models / "diffusion_models" / "hidream_i1_dev_bf16.safetensors", state, torch.bfloat16)
    _save(models / "diffusion_models" / "hidream_i1_dev_fp8.safetensors", state, torch.float8_e4m3fn)
    _save(models / "text_encoders" / FILES["clip_l"], clip_file_state(clip_l))
    _save(models / "text_encoders" / FILES["clip_g"], clip_file_state(clip_g))
    _save(models / "text_encoders" / FILES["t5xxl"], t5_file_state(t5))
    _save(models / "text_encoders" / FILES["llama"], llama_file_state(llama), torch.bfloat16)
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    write_byte_tokenizer(models / "text_encoders" / "llama_tokenizer" / "tokenizer.json")
    return {"transformer": transformer, "clip_l": clip_l, "clip_g": clip_g, "t5": t5, "llama": llama}


def hidream_workflow(
    seed: int = 1, unet: str = "hidream_i1_dev_bf16.safetensors", dtype: str = "default"
) -> dict:
    """The hidream_i1_dev template's graph at 64 × 64 and 3 steps."""
    return {
        "54": {
            "class_type": "QuadrupleCLIPLoader",
            "inputs": {f"clip_name{i + 1}": f for i, f in enumerate(FILES.values())},
        },
        "55": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "69": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": dtype}},
        "70": {"class_type": "ModelSamplingSD3", "inputs": {"model": ["69", 0], "shift": 6.0}},
        "16": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a (red:1.2) fox in the snow", "clip": ["54", 0]},
        },
        "40": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "bad ugly jpeg artifacts", "clip": ["54", 0]},
        },
        "53": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
                "cfg": 2.0,
                "sampler_name": "lcm",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["70", 0],
                "positive": ["16", 0],
                "negative": ["40", 0],
                "latent_image": ["53", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["55", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }


def hidream_e1_workflow(seed: int = 1, image: str = "input.png") -> dict:
    """The hidream_e1_1 template's graph (InstructPixToPixConditioning, DualCFGGuider, CFGNorm) at 3 steps."""
    return {
        "1": {
            "class_type": "QuadrupleCLIPLoader",
            "inputs": {f"clip_name{i + 1}": f for i, f in enumerate(FILES.values())},
        },
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "3": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "hidream_i1_dev_fp8.safetensors", "weight_dtype": "fp8_e4m3fn_fast"},
        },
        "4": {"class_type": "CFGNorm", "inputs": {"model": ["3", 0], "strength": 1.0}},
        "5": {"class_type": "LoadImage", "inputs": {"image": image}},
        "6": {
            "class_type": "ImageScaleToTotalPixels",
            "inputs": {"image": ["5", 0], "upscale_method": "area", "megapixels": 0.01},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "make the sky green", "clip": ["1", 0]}},
        "8": {"class_type": "CLIPTextEncode", "inputs": {"text": "low quality, blurry", "clip": ["1", 0]}},
        "9": {
            "class_type": "InstructPixToPixConditioning",
            "inputs": {"positive": ["7", 0], "negative": ["8", 0], "vae": ["2", 0], "pixels": ["6", 0]},
        },
        "10": {
            "class_type": "DualCFGGuider",
            "inputs": {
                "model": ["4", 0],
                "cond1": ["9", 0],
                "cond2": ["9", 1],
                "negative": ["8", 0],
                "cfg_conds": 3.0,
                "cfg_cond2_negative": 1.5,
                "style": "regular",
            },
        },
        "11": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "12": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "13": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["4", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0},
        },
        "14": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["11", 0],
                "guider": ["10", 0],
                "sampler": ["12", 0],
                "sigmas": ["13", 0],
                "latent_image": ["9", 2],
            },
        },
        "15": {"class_type": "VAEDecode", "inputs": {"samples": ["14", 0], "vae": ["2", 0]}},
        "16": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["15", 0]}},
    }
