"""Tiny random-weight SD3 stand-ins in ComfyUI's real file layouts, written by the tests.

A tiny diffusers `SD3Transformer2DModel` is written under the original MMDiT names (the key map below is
the inverse of diffusers' converter), text encoders in transformers' layout with the `text_model.` prefix
ComfyUI's clip_l/clip_g files have, T5 in its encoder layout, and a 16-channel VAE in the LDM layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

CLIP_L_WIDTH, CLIP_G_WIDTH = 64, 128
JOINT = CLIP_L_WIDTH + CLIP_G_WIDTH  # T5's width, so the CLIP and T5 parts stack along the sequence


def _seeded(seed: int) -> None:
    torch.manual_seed(seed)


def tiny_sd3_transformer(
    seed: int = 0, qk_norm: bool = False, dual: tuple[int, ...] = (), heads: int = 1
) -> Any:
    """`heads` heads of 64; ComfyUI reads depth = width / 64, so a stand-in it loads has `heads` blocks."""
    from diffusers import SD3Transformer2DModel

    _seeded(seed)
    model = SD3Transformer2DModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        num_layers=2 if heads == 1 else heads,
        attention_head_dim=64,
        num_attention_heads=heads,
        joint_attention_dim=JOINT,
        caption_projection_dim=64 * heads,
        pooled_projection_dim=CLIP_L_WIDTH + CLIP_G_WIDTH,
        out_channels=16,
        pos_embed_max_size=16,
        dual_attention_layers=dual,
        qk_norm="rms_norm" if qk_norm else None,
    )
    # diffusers zero-initialises nothing here, but make the output depend on every input clearly.
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def _swap(weight: torch.Tensor) -> torch.Tensor:
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def sd3_to_comfy(state: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    """diffusers SD3 names → ComfyUI's MMDiT names (fused qkv, shift/scale order of the final norms)."""
    out: dict[str, torch.Tensor] = {}
    simple = {
        "pos_embed.pos_embed": "pos_embed",
        "pos_embed.proj.weight": "x_embedder.proj.weight",
        "pos_embed.proj.bias": "x_embedder.proj.bias",
        "context_embedder.weight": "context_embedder.weight",
        "context_embedder.bias": "context_embedder.bias",
        "proj_out.weight": "final_layer.linear.weight",
        "proj_out.bias": "final_layer.linear.bias",
    }
    for ours, theirs in simple.items():
        out[theirs] = state[ours]
    for kind, name in (("timestep_embedder", "t_embedder"), ("text_embedder", "y_embedder")):
        for linear, index in (("linear_1", 0), ("linear_2", 2)):
            for p in ("weight", "bias"):
                out[f"{name}.mlp.{index}.{p}"] = state[f"time_text_embed.{kind}.{linear}.{p}"]
    for p in ("weight", "bias"):
        out[f"final_layer.adaLN_modulation.1.{p}"] = _swap(state[f"norm_out.linear.{p}"])
    for i in range(num_layers):
        b, o = f"transformer_blocks.{i}.", f"joint_blocks.{i}."
        last = i == num_layers - 1
        for p in ("weight", "bias"):
            out[f"{o}x_block.attn.qkv.{p}"] = torch.cat([state[f"{b}attn.to_{c}.{p}"] for c in "qkv"])
            out[f"{o}context_block.attn.qkv.{p}"] = torch.cat(
                [state[f"{b}attn.add_{c}_proj.{p}"] for c in "qkv"]
            )
            out[f"{o}x_block.attn.proj.{p}"] = state[f"{b}attn.to_out.0.{p}"]
            out[f"{o}x_block.adaLN_modulation.1.{p}"] = state[f"{b}norm1.linear.{p}"]
            context_norm = state[f"{b}norm1_context.linear.{p}"]
            out[f"{o}context_block.adaLN_modulation.1.{p}"] = _swap(context_norm) if last else context_norm
            out[f"{o}x_block.mlp.fc1.{p}"] = state[f"{b}ff.net.0.proj.{p}"]
            out[f"{o}x_block.mlp.fc2.{p}"] = state[f"{b}ff.net.2.{p}"]
            if not last:
                out[f"{o}context_block.attn.proj.{p}"] = state[f"{b}attn.to_add_out.{p}"]
                out[f"{o}context_block.mlp.fc1.{p}"] = state[f"{b}ff_context.net.0.proj.{p}"]
                out[f"{o}context_block.mlp.fc2.{p}"] = state[f"{b}ff_context.net.2.{p}"]
            if f"{b}attn2.to_q.{p}" in state:
                out[f"{o}x_block.attn2.qkv.{p}"] = torch.cat([state[f"{b}attn2.to_{c}.{p}"] for c in "qkv"])
                out[f"{o}x_block.attn2.proj.{p}"] = state[f"{b}attn2.to_out.0.{p}"]
        norms = {
            "norm_q": "x_block.attn.ln_q",
            "norm_k": "x_block.attn.ln_k",
            "norm_added_q": "context_block.attn.ln_q",
            "norm_added_k": "context_block.attn.ln_k",
        }
        for ours, theirs in norms.items():
            if f"{b}attn.{ours}.weight" in state:
                out[f"{o}{theirs}.weight"] = state[f"{b}attn.{ours}.weight"]
        for ours, theirs in (("norm_q", "ln_q"), ("norm_k", "ln_k")):
            if f"{b}attn2.{ours}.weight" in state:
                out[f"{o}x_block.attn2.{theirs}.weight"] = state[f"{b}attn2.{ours}.weight"]
    return out


def tiny_clip(role: str, seed: int) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from engine.models.tokenizer import VOCAB_SIZE

    _seeded(seed)
    width = CLIP_G_WIDTH if role == "clip_g" else CLIP_L_WIDTH
    config = CLIPTextConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=width // 64,
        max_position_embeddings=77,
        projection_dim=width,
        hidden_act="gelu" if role == "clip_g" else "quick_gelu",
        pad_token_id=0 if role == "clip_g" else 49407,
        bos_token_id=49406,
        eos_token_id=49407,
    )
    cls = CLIPTextModelWithProjection if role == "clip_g" else CLIPTextModel
    return cls(config).eval()


def clip_file_state(model: Any) -> dict[str, torch.Tensor]:
    """transformers CLIP weights as ComfyUI's clip_l/clip_g files name them (`text_model.…`)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("position_ids"):
            continue
        if not key.startswith(("text_model.", "text_projection")):
            key = "text_model." + key
        out[key] = value.contiguous()
    return out


def tiny_t5(seed: int) -> Any:
    from transformers import T5Config, T5EncoderModel

    _seeded(seed)
    config = T5Config(
        vocab_size=32128,
        d_model=JOINT,
        d_kv=64,
        d_ff=256,
        num_layers=2,
        num_heads=JOINT // 64,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    return T5EncoderModel(config).eval()


def t5_file_state(model: Any) -> dict[str, torch.Tensor]:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    state.pop("encoder.embed_tokens.weight", None)  # tied to shared.weight, as in t5xxl_fp16.safetensors
    return state


def tiny_vae16(seed: int) -> Any:
    from diffusers import AutoencoderKL

    _seeded(seed)
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        block_out_channels=[32, 32, 32, 32],
        layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        norm_num_groups=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ).eval()


def vae_file_state(vae: Any) -> dict[str, torch.Tensor]:
    from engine.models.keymap import vae_to_original

    return {k: v.contiguous() for k, v in vae_to_original(vae.state_dict(), vae.config).items()}


def _save(path: Path, state: dict[str, torch.Tensor], dtype: torch.dtype | None = torch.float16) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v).contiguous()
            for k, v in state.items()
        },
        str(path),
    )


def write_sd3_files(models: Path) -> dict[str, Any]:
    """ComfyUI's SD3 files under `models`: split files, an fp8 diffusion model, an all-in-one checkpoint."""
    transformer = tiny_sd3_transformer(seed=1)
    mmdit = sd3_to_comfy(transformer.state_dict(), transformer.config.num_layers)
    clip_l, clip_g, t5 = tiny_clip("clip_l", 2), tiny_clip("clip_g", 3), tiny_t5(4)
    vae = tiny_vae16(5)
    _save(models / "diffusion_models" / "tiny_sd3.safetensors", mmdit)
    _save(models / "unet" / "tiny_sd3_fp8_e4m3fn.safetensors", mmdit, torch.float8_e4m3fn)
    _save(models / "text_encoders" / "tiny_clip_l.safetensors", clip_file_state(clip_l))
    _save(models / "text_encoders" / "tiny_clip_g.safetensors", clip_file_state(clip_g))
    _save(models / "clip" / "tiny_t5xxl_fp16.safetensors", t5_file_state(t5))
    _save(models / "vae" / "tiny_sd3_vae.safetensors", vae_file_state(vae))
    everything = {"model.diffusion_model." + k: v for k, v in mmdit.items()}
    everything |= {"first_stage_model." + k: v for k, v in vae_file_state(vae).items()}
    for role, state in (
        ("clip_l", clip_file_state(clip_l)),
        ("clip_g", clip_file_state(clip_g)),
        ("t5xxl", t5_file_state(t5)),
    ):
        everything |= {f"text_encoders.{role}.transformer." + k: v for k, v in state.items()}
    _save(models / "checkpoints" / "tiny_sd3.5_all_in_one.safetensors", everything)
    return {"transformer": transformer, "clip_l": clip_l, "clip_g": clip_g, "t5": t5, "vae": vae}


def sd3_workflow(
    seed: int = 1, size: int = 64, sampler: str = "euler", scheduler: str = "simple", loader: str = "split"
) -> dict[str, Any]:
    """SD3.5's text-to-image graph as ComfyUI_examples builds it, with tiny stand-in file names."""
    if loader == "split":
        model_nodes = {
            "1": {
                "class_type": "UNETLoader",
                "inputs": {"unet_name": "tiny_sd3.safetensors", "weight_dtype": "default"},
            },
            "2": {
                "class_type": "TripleCLIPLoader",
                "inputs": {
                    "clip_name1": "tiny_clip_l.safetensors",
                    "clip_name2": "tiny_clip_g.safetensors",
                    "clip_name3": "tiny_t5xxl_fp16.safetensors",
                },
            },
            "3": {"class_type": "VAELoader", "inputs": {"vae_name": "tiny_sd3_vae.safetensors"}},
        }
        model, clip, vae = ["1", 0], ["2", 0], ["3", 0]
    else:
        model_nodes = {
            "1": {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "tiny_sd3.5_all_in_one.safetensors"},
            }
        }
        model, clip, vae = ["1", 0], ["1", 1], ["1", 2]
    return {
        **model_nodes,
        "4": {"class_type": "ModelSamplingSD3", "inputs": {"model": model, "shift": 3.0}},
        "5": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a red (circle:1.2) on white", "clip": clip},
        },
        "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": clip}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "8": {
            "class_type": "EmptySD3LatentImage",
            "inputs": {"width": size, "height": size, "batch_size": 1},
        },
        "9": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
                "cfg": 4.5,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "denoise": 1.0,
                "model": ["4", 0],
                "positive": ["5", 0],
                "negative": ["7", 0],
                "latent_image": ["8", 0],
            },
        },
        "10": {"class_type": "VAEDecode", "inputs": {"samples": ["9", 0], "vae": vae}},
        "11": {"class_type": "SaveImage", "inputs": {"images": ["10", 0], "filename_prefix": "sd3"}},
    }


def tiny_flux_transformer(seed: int = 0, guidance: bool = True) -> Any:
    from diffusers import FluxTransformer2DModel

    _seeded(seed)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=JOINT,
        pooled_projection_dim=CLIP_L_WIDTH,
        guidance_embeds=guidance,
        axes_dims_rope=(16, 56, 56),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return model.eval()


def flux_to_comfy(
    state: dict[str, torch.Tensor], num_layers: int, num_single: int
) -> dict[str, torch.Tensor]:
    """diffusers Flux names → the reference (BFL/ComfyUI) names: fused qkv and linear1, shift/scale order."""
    out: dict[str, torch.Tensor] = {}
    for p in ("weight", "bias"):
        out[f"img_in.{p}"] = state[f"x_embedder.{p}"]
        out[f"txt_in.{p}"] = state[f"context_embedder.{p}"]
        out[f"final_layer.linear.{p}"] = state[f"proj_out.{p}"]
        out[f"final_layer.adaLN_modulation.1.{p}"] = _swap(state[f"norm_out.linear.{p}"])
        for theirs, ours in (
            ("time_in", "timestep_embedder"),
            ("vector_in", "text_embedder"),
            ("guidance_in", "guidance_embedder"),
        ):
            if f"time_text_embed.{ours}.linear_1.{p}" in state:
                out[f"{theirs}.in_layer.{p}"] = state[f"time_text_embed.{ours}.linear_1.{p}"]
                out[f"{theirs}.out_layer.{p}"] = state[f"time_text_embed.{ours}.linear_2.{p}"]
    out.update(flux_blocks_to_comfy(state, num_layers, num_single, modulated=True))
    return out


def flux_blocks_to_comfy(
    state: dict[str, torch.Tensor], num_layers: int, num_single: int, modulated: bool
) -> dict[str, torch.Tensor]:
    """The double and single blocks of a diffusers Flux-type transformer under the reference keys;
    Flux's carry modulation layers (`modulated`), Chroma's do not."""
    out: dict[str, torch.Tensor] = {}
    double = {
        "img_mod.lin": "norm1.linear",
        "txt_mod.lin": "norm1_context.linear",
        "img_attn.proj": "attn.to_out.0",
        "txt_attn.proj": "attn.to_add_out",
        "img_mlp.0": "ff.net.0.proj",
        "img_mlp.2": "ff.net.2",
        "txt_mlp.0": "ff_context.net.0.proj",
        "txt_mlp.2": "ff_context.net.2",
    }
    if not modulated:
        double = {k: v for k, v in double.items() if "_mod." not in k}
    for i in range(num_layers):
        o, b = f"double_blocks.{i}.", f"transformer_blocks.{i}."
        for p in ("weight", "bias"):
            for theirs, ours in double.items():
                out[f"{o}{theirs}.{p}"] = state[f"{b}{ours}.{p}"]
            out[f"{o}img_attn.qkv.{p}"] = torch.cat([state[f"{b}attn.to_{c}.{p}"] for c in "qkv"])
            out[f"{o}txt_attn.qkv.{p}"] = torch.cat([state[f"{b}attn.add_{c}_proj.{p}"] for c in "qkv"])
        for stream, q, k in (("img_attn", "norm_q", "norm_k"), ("txt_attn", "norm_added_q", "norm_added_k")):
            out[f"{o}{stream}.norm.query_norm.scale"] = state[f"{b}attn.{q}.weight"]
            out[f"{o}{stream}.norm.key_norm.scale"] = state[f"{b}attn.{k}.weight"]
    for i in range(num_single):
        o, b = f"single_blocks.{i}.", f"single_transformer_blocks.{i}."
        for p in ("weight", "bias"):
            parts = [state[f"{b}attn.to_{c}.{p}"] for c in "qkv"] + [state[f"{b}proj_mlp.{p}"]]
            out[f"{o}linear1.{p}"] = torch.cat(parts)
            out[f"{o}linear2.{p}"] = state[f"{b}proj_out.{p}"]
            if modulated:
                out[f"{o}modulation.lin.{p}"] = state[f"{b}norm.linear.{p}"]
        out[f"{o}norm.query_norm.scale"] = state[f"{b}attn.norm_q.weight"]
        out[f"{o}norm.key_norm.scale"] = state[f"{b}attn.norm_k.weight"]
    return out


def write_flux_files(models: Path) -> dict[str, Any]:
    """Flux.1 files as ComfyUI's examples name them: split dev and schnell models, ae, clip_l, t5xxl, and a
    flux1-dev-fp8 style checkpoint (fp8 transformer with fp16 text encoders and VAE)."""
    dev, schnell = tiny_flux_transformer(seed=11), tiny_flux_transformer(seed=12, guidance=False)
    clip_l, t5, vae = tiny_clip("clip_l", 13), tiny_t5(14), tiny_vae16(15)
    dev_state = flux_to_comfy(dev.state_dict(), 1, 1)
    _save(models / "diffusion_models" / "flux1-dev.safetensors", dev_state)
    _save(models / "unet" / "flux1-schnell.safetensors", flux_to_comfy(schnell.state_dict(), 1, 1))
    _save(models / "text_encoders" / "clip_l.safetensors", clip_file_state(clip_l))
    _save(models / "text_encoders" / "t5xxl_fp8_e4m3fn.safetensors", t5_file_state(t5))
    _save(models / "vae" / "ae.safetensors", vae_file_state(vae))
    everything = {
        "model.diffusion_model." + k: v.to(torch.float8_e4m3fn) for k, v in dev_state.items() if v.ndim == 2
    }
    everything |= {"model.diffusion_model." + k: v.half() for k, v in dev_state.items() if v.ndim != 2}
    everything |= {"first_stage_model." + k: v.half() for k, v in vae_file_state(vae).items()}
    for role, state in (("clip_l", clip_file_state(clip_l)), ("t5xxl", t5_file_state(t5))):
        everything |= {f"text_encoders.{role}.transformer." + k: v.half() for k, v in state.items()}
    _save(models / "checkpoints" / "flux1-dev-fp8.safetensors", everything, None)
    return {"dev": dev, "schnell": schnell, "clip_l": clip_l, "t5": t5, "vae": vae}


def flux_workflow(
    seed: int = 1, guidance: float = 3.5, loader: str = "split", unet: str = "flux1-dev.safetensors"
) -> dict[str, Any]:
    """ComfyUI_examples' Flux dev graphs: split files (UNETLoader, DualCLIPLoader type flux, VAELoader) or the
    flux1-dev-fp8 checkpoint; FluxGuidance on the prompt, KSampler at cfg 1 with a zeroed negative."""
    if loader == "split":
        nodes = {
            "12": {"class_type": "UNETLoader", "inputs": {"unet_name": unet, "weight_dtype": "default"}},
            "11": {
                "class_type": "DualCLIPLoader",
                "inputs": {
                    "clip_name1": "t5xxl_fp8_e4m3fn.safetensors",
                    "clip_name2": "clip_l.safetensors",
                    "type": "flux",
                },
            },
            "10": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        }
        model, clip, vae = ["12", 0], ["11", 0], ["10", 0]
    else:
        nodes = {
            "30": {
                "class_type": "CheckpointLoaderSimple",
                "inputs": {"ckpt_name": "flux1-dev-fp8.safetensors"},
            }
        }
        model, clip, vae = ["30", 0], ["30", 1], ["30", 2]
    return {
        **nodes,
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "cute anime girl with massive fluffy fennec ears", "clip": clip},
        },
        "35": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["6", 0], "guidance": guidance}},
        "33": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["6", 0]}},
        "27": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "31": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "denoise": 1.0,
                "model": model,
                "positive": ["35", 0],
                "negative": ["33", 0],
                "latent_image": ["27", 0],
            },
        },
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["31", 0], "vae": vae}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
