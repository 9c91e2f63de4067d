"""Tiny random-weight stand-ins for Z-Image, Qwen-Image and Chroma in ComfyUI's file layouts, written by the
tests: diffusion models under their original names, Qwen text encoders in transformers' causal-LM layout
(`model.layers.…`), T5 as for Flux, and 16-channel VAEs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save, t5_file_state, tiny_t5, tiny_vae16, vae_file_state

QWEN_VOCAB = 151936  # Qwen3's and Qwen2.5's embedding rows (the tokenizer's ids reach 151668)


def _randomize(model: Any, seed: int, std: float = 0.05) -> Any:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def tiny_zimage_transformer(seed: int = 0, cap_dim: int = 32) -> Any:
    from diffusers import ZImageTransformer2DModel

    torch.manual_seed(seed)
    model = ZImageTransformer2DModel(
        in_channels=16,
        dim=256,
        n_layers=2,
        n_refiner_layers=1,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=cap_dim,
        axes_dims=[32, 48, 48],
        axes_lens=[1536, 512, 512],
    )
    return _randomize(model, seed)


def zimage_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers Z-Image names → the original ones ComfyUI's file has (fused qkv, `attention.out`, …)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".attention.to_k." in key or ".attention.to_v." in key:
            continue
        if ".attention.to_q.weight" in key:
            base = key.replace(".attention.to_q.weight", ".attention.")
            parts = [state[f"{base}to_{c}.weight"] for c in "qkv"]
            out[base + "qkv.weight"] = torch.cat(parts)
            continue
        new = key.replace("all_x_embedder.2-1.", "x_embedder.").replace("all_final_layer.2-1.", "final_layer.")
        new = new.replace(".attention.to_out.0.", ".attention.out.")
        new = new.replace(".attention.norm_q.", ".attention.q_norm.").replace(".attention.norm_k.", ".attention.k_norm.")
        out[new] = value
    return out


def tiny_qwen(kind: str, seed: int, hidden: int = 32) -> Any:
    """A Qwen3 (with q/k norms) or Qwen2.5 (q/k/v biases) language model, 2 layers, the full vocabulary."""
    from engine.diffusion.llm_encoder import LLMEncoder

    torch.manual_seed(seed)
    common = {
        "vocab_size": QWEN_VOCAB,
        "hidden_size": hidden,
        "intermediate_size": 2 * hidden,
        "num_hidden_layers": 2,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1_000_000.0,
        "tie_word_embeddings": False,
    }
    if kind == "qwen3":
        from transformers import Qwen3Config, Qwen3Model

        model = Qwen3Model(Qwen3Config(**common, num_attention_heads=2, num_key_value_heads=1, head_dim=16))
    else:
        from transformers import Qwen2Config, Qwen2Model

        model = Qwen2Model(Qwen2Config(**common, num_attention_heads=1, num_key_value_heads=1, head_dim=128))
    return _randomize(LLMEncoder(model), seed, 0.1)


def qwen_file_state(encoder: Any, with_head: bool = True) -> dict[str, torch.Tensor]:
    """ComfyUI's qwen_3_4b / qwen_2.5_vl_7b layout: `model.…` (and an lm_head Loom ignores)."""
    state = {k: v.contiguous() for k, v in encoder.state_dict().items()}
    if with_head:
        state["lm_head.weight"] = torch.zeros(8, encoder.config.hidden_size)
    return state


def write_zimage_files(models: Path) -> dict[str, Any]:
    """The files of ComfyUI's Z-Image Turbo template: the diffusion model (and an fp8 copy), Qwen3-4B, ae."""
    qwen3 = tiny_qwen("qwen3", 21)
    transformer = tiny_zimage_transformer(22, cap_dim=qwen3.config.hidden_size)
    vae = tiny_vae16(23)
    state = zimage_to_comfy(transformer.state_dict())
    state["norm_final.weight"] = torch.ones(transformer.config.dim)  # in the released file, unused
    _save(models / "diffusion_models" / "z_image_turbo_bf16.safetensors", state, torch.bfloat16)
    _save(models / "unet" / "z_image_turbo_fp8_e4m3fn.safetensors", {
        k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and "pad_token" not in k else v.half() for k, v in state.items()
    }, None)
    _save(models / "text_encoders" / "qwen_3_4b.safetensors", qwen_file_state(qwen3), torch.bfloat16)
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    return {"transformer": transformer, "qwen3": qwen3, "vae": vae}


def zimage_workflow(seed: int = 1, unet: str = "z_image_turbo_bf16.safetensors", steps: int = 4) -> dict[str, Any]:
    """The official front end's default graph (Z-Image Turbo): UNETLoader, CLIPLoader type lumina2,
    ModelSamplingAuraFlow shift 3, EmptySD3LatentImage, res_multistep at cfg 1 with a zeroed negative."""
    return {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "2": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": "qwen_3_4b.safetensors", "type": "lumina2", "device": "default"},
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["1", 0], "shift": 3.0}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle on white", "clip": ["2", 0]}},
        "6": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["5", 0]}},
        "7": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 48, "batch_size": 1}},
        "8": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "res_multistep",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["5", 0],
                "negative": ["6", 0],
                "latent_image": ["7", 0],
            },
        },
        "9": {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["3", 0]}},
        "10": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "zimage"}},
    }
