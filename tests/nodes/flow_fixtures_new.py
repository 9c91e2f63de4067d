"""Tiny random-weight stand-ins for Z-Image, Qwen-Image and Chroma in ComfyUI's file layouts, written by the
tests: diffusion models under their original names, Qwen text encoders in transformers' causal-LM layout
(`model.layers.…`), T5 as for Flux, and 16-channel VAEs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import (
    _save,
    flux_blocks_to_comfy,
    t5_file_state,
    tiny_t5,
    tiny_vae16,
    vae_file_state,
)

QWEN_VOCAB = 151936  # Qwen3's and Qwen2.5's embedding rows (the tokenizer's ids reach 151668)


def _randomize(model: Any, seed: int, std: float = 0.05) -> Any:
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


def tiny_zimage_transformer(
    seed: int = 0, cap_dim: int = 32, dim: int = 256, layers: int = 2, refiner_layers: int = 1
) -> Any:
    """Two heads; the rotary axes split each head as Loom's loader does (Z-Image's for 128 channels)."""
    from diffusers import ZImageTransformer2DModel

    from engine.models.zimage import AXES_DIMS, _axes_for

    head_dim = dim // 2
    torch.manual_seed(seed)
    model = ZImageTransformer2DModel(
        in_channels=16,
        dim=dim,
        n_layers=layers,
        n_refiner_layers=refiner_layers,
        n_heads=2,
        n_kv_heads=2,
        cap_feat_dim=cap_dim,
        axes_dims=list(AXES_DIMS if head_dim == sum(AXES_DIMS) else _axes_for(head_dim)),
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
        new = key.replace("all_x_embedder.2-1.", "x_embedder.").replace(
            "all_final_layer.2-1.", "final_layer."
        )
        new = new.replace(".attention.to_out.0.", ".attention.out.")
        new = new.replace(".attention.norm_q.", ".attention.q_norm.").replace(
            ".attention.norm_k.", ".attention.k_norm."
        )
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
    _save(
        models / "unet" / "z_image_turbo_fp8_e4m3fn.safetensors",
        {
            k: v.to(torch.float8_e4m3fn) if v.ndim == 2 and "pad_token" not in k else v.half()
            for k, v in state.items()
        },
        None,
    )
    _save(models / "text_encoders" / "qwen_3_4b.safetensors", qwen_file_state(qwen3), torch.bfloat16)
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    return {"transformer": transformer, "qwen3": qwen3, "vae": vae}


def zimage_workflow(
    seed: int = 1, unet: str = "z_image_turbo_bf16.safetensors", steps: int = 4
) -> dict[str, Any]:
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


# --- Qwen-Image ---------------------------------------------------------------------------------------


# Qwen2.5-VL's vision tower in transformers' names (the file's `visual.…`): 2 blocks of one 80-wide head.
TINY_VISION = {
    "depth": 2,
    "hidden_size": 80,
    "intermediate_size": 96,
    "num_heads": 1,
    "in_channels": 3,
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [],
    "rope_parameters": {"rope_type": "axial", "rope_theta": 10000.0},
}


def tiny_qwen_vision(seed: int, out_width: int) -> Any:
    from transformers.models.qwen2_5_vl.configuration_qwen2_5_vl import Qwen2_5_VLVisionConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    config = Qwen2_5_VLVisionConfig(**TINY_VISION, out_hidden_size=out_width)
    return _randomize(Qwen2_5_VisionTransformerPretrainedModel(config), seed)


def tiny_qwen_image_transformer(seed: int = 0, context: int = 32, layers: int = 2) -> Any:
    from diffusers import QwenImageTransformer2DModel

    torch.manual_seed(seed)
    model = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=layers,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=context,
        guidance_embeds=False,
        axes_dims_rope=(16, 56, 56),
    )
    return _randomize(model, seed)


def tiny_qwen_vae(seed: int) -> Any:
    """Wan 2.1's topology (4 levels of 2 residual blocks, temporal downsampling in the last two) at 8 wide."""
    from diffusers import AutoencoderKLQwenImage

    torch.manual_seed(seed)
    vae = AutoencoderKLQwenImage(
        base_dim=8, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, temperal_downsample=[False, True, True]
    )
    return _randomize(vae, seed, 0.1)


_RESIDUAL = {
    "norm1.gamma": "residual.0.gamma",
    "conv1": "residual.2",
    "norm2.gamma": "residual.3.gamma",
    "conv2": "residual.6",
}


def _residual(rest: str) -> str:
    for ours, theirs in _RESIDUAL.items():
        if rest.startswith(ours):
            return theirs + rest[len(ours) :]
    return rest.replace("conv_shortcut", "shortcut")


def wan_vae_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers (AutoencoderKLQwenImage) names → Wan's original ones (ComfyUI's qwen_image_vae)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        new = key
        for side in ("encoder", "decoder"):
            new = new.replace(f"{side}.conv_in.", f"{side}.conv1.").replace(
                f"{side}.norm_out.", f"{side}.head.0."
            )
            new = new.replace(f"{side}.conv_out.", f"{side}.head.2.")
            new = new.replace(f"{side}.mid_block.attentions.0.", f"{side}.middle.1.")
            for index, middle in ((0, 0), (1, 2)):
                head = f"{side}.mid_block.resnets.{index}."
                if new.startswith(head):
                    new = f"{side}.middle.{middle}." + _residual(new[len(head) :])
        if new.startswith("quant_conv."):
            new = "conv1." + new[len("quant_conv.") :]
        elif new.startswith("post_quant_conv."):
            new = "conv2." + new[len("post_quant_conv.") :]
        elif new.startswith("encoder.down_blocks."):
            _, _, index, rest = new.split(".", 3)
            new = f"encoder.downsamples.{index}." + _residual(rest)
        elif new.startswith("decoder.up_blocks."):
            _, _, block, kind, index, rest = new.split(".", 5)
            if kind == "resnets":
                new = f"decoder.upsamples.{4 * int(block) + int(index)}." + _residual(rest)
            else:
                new = f"decoder.upsamples.{4 * int(block) + 3}.{rest}"
        out[new] = value
    return out


def write_qwen_image_files(models: Path) -> dict[str, Any]:
    """ComfyUI's Qwen-Image files: the diffusion model (and fp8), qwen_2.5_vl_7b (language model and
    vision tower), qwen_image_vae."""
    qwen25 = tiny_qwen("qwen25", 31, hidden=128)
    transformer = tiny_qwen_image_transformer(32, context=qwen25.config.hidden_size)
    vae = tiny_qwen_vae(33)
    state = {k: v.contiguous() for k, v in transformer.state_dict().items()}
    _save(models / "diffusion_models" / "qwen_image_bf16.safetensors", state, torch.bfloat16)
    _save(
        models / "diffusion_models" / "qwen_image_fp8_e4m3fn.safetensors",
        {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v.half() for k, v in state.items()},
        None,
    )
    vision = tiny_qwen_vision(34, qwen25.config.hidden_size)
    text = qwen_file_state(qwen25) | {"visual." + k: v.contiguous() for k, v in vision.state_dict().items()}
    _save(models / "text_encoders" / "qwen_2.5_vl_7b_fp8_scaled.safetensors", text, torch.bfloat16)
    _save(models / "vae" / "qwen_image_vae.safetensors", wan_vae_to_comfy(vae.state_dict()), torch.bfloat16)
    return {"transformer": transformer, "qwen25": qwen25, "vision": vision, "vae": vae}


def qwen_image_workflow(seed: int = 1, unet: str = "qwen_image_bf16.safetensors") -> dict[str, Any]:
    """ComfyUI's Qwen-Image text-to-image template: ModelSamplingAuraFlow shift 3.1, cfg 2.5, euler/simple."""
    return {
        "37": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
        "38": {
            "class_type": "CLIPLoader",
            "inputs": {
                "clip_name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
                "type": "qwen_image",
                "device": "default",
            },
        },
        "39": {"class_type": "VAELoader", "inputs": {"vae_name": "qwen_image_vae.safetensors"}},
        "66": {"class_type": "ModelSamplingAuraFlow", "inputs": {"model": ["37", 0], "shift": 3.1}},
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a neon sign that says LOOM", "clip": ["38", 0]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["38", 0]}},
        "58": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
                "cfg": 2.5,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": ["66", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["58", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["39", 0]}},
        "60": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "qwen"}},
    }


# --- Chroma -------------------------------------------------------------------------------------------


def tiny_chroma_transformer(seed: int = 0, context: int = 192) -> Any:
    from diffusers import ChromaTransformer2DModel

    torch.manual_seed(seed)
    model = ChromaTransformer2DModel(
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=context,
        approximator_num_channels=64,
        approximator_hidden_dim=64,
        approximator_layers=1,
    )
    return _randomize(model, seed)


def chroma_to_comfy(
    state: dict[str, torch.Tensor], num_layers: int, num_single: int
) -> dict[str, torch.Tensor]:
    """diffusers Chroma names → the reference ones (fused qkv and linear1, `distilled_guidance_layer`)."""
    out: dict[str, torch.Tensor] = {}
    g = "distilled_guidance_layer."
    for key, value in state.items():
        if key.startswith(g):
            new = key.replace(".linear_1.", ".in_layer.").replace(".linear_2.", ".out_layer.")
            out[new.replace(".weight", ".scale") if ".norms." in key else new] = value
    for p in ("weight", "bias"):
        out[f"img_in.{p}"] = state[f"x_embedder.{p}"]
        out[f"txt_in.{p}"] = state[f"context_embedder.{p}"]
        out[f"final_layer.linear.{p}"] = state[f"proj_out.{p}"]
    out.update(flux_blocks_to_comfy(state, num_layers, num_single, modulated=False))
    return out


def write_chroma_files(models: Path) -> dict[str, Any]:
    """Chroma's files as ComfyUI's example names them: the diffusion model, t5xxl, ae."""
    t5, vae = tiny_t5(41), tiny_vae16(42)
    transformer = tiny_chroma_transformer(43, context=t5.config.d_model)
    _save(
        models / "diffusion_models" / "chroma-unlocked-v35.safetensors",
        chroma_to_comfy(transformer.state_dict(), 1, 1),
    )
    _save(models / "text_encoders" / "t5xxl_fp16.safetensors", t5_file_state(t5))
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    return {"transformer": transformer, "t5": t5, "vae": vae}


def chroma_workflow(seed: int = 1) -> dict[str, Any]:
    """ComfyUI_examples' Chroma graph: CLIPLoader type chroma, T5TokenizerOptions, cfg 4, euler/beta."""
    return {
        "1": {
            "class_type": "UNETLoader",
            "inputs": {"unet_name": "chroma-unlocked-v35.safetensors", "weight_dtype": "default"},
        },
        "2": {
            "class_type": "CLIPLoader",
            "inputs": {"clip_name": "t5xxl_fp16.safetensors", "type": "chroma", "device": "default"},
        },
        "3": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "a watercolour fox", "clip": ["2", 0]}},
        "5": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": ["2", 0]}},
        "6": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "7": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
                "cfg": 4.0,
                "sampler_name": "euler",
                "scheduler": "beta",
                "denoise": 1.0,
                "model": ["1", 0],
                "positive": ["4", 0],
                "negative": ["5", 0],
                "latent_image": ["6", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["7", 0], "vae": ["3", 0]}},
        "9": {"class_type": "SaveImage", "inputs": {"images": ["8", 0], "filename_prefix": "chroma"}},
    }
