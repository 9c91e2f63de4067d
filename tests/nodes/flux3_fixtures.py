"""Tiny random-weight Flux 3 (Klein) files in ComfyUI's layouts, written by the tests: the diffusion model
in Black Forest Labs' names (base, and the distilled flow map with `ref_time_in`), block matrices in int8
ConvRot as the released `*-int8-convrot` files; the Qwen3-VL 4B text encoder (`model.layers.…`, 33 layers
so that the inputs of layers 4…32 exist, int8 ConvRot too) and Flux.2's VAE."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from tests.nodes.flow_fixtures import _save
from tests.nodes.flow_fixtures_new import QWEN_VOCAB, _randomize, qwen_file_state
from tests.nodes.flux2_fixtures import flux2_vae_file_state, tiny_flux2_vae
from tests.nodes.qwen21_fixtures import quantise_convrot

TE_LAYERS = 33
TE_HIDDEN = 16
JOINT = 8 * TE_HIDDEN  # eight hidden layers side by side
BASE = "flux3-image-klein-base-int8-convrot.safetensors"
DISTILLED = "flux3-image-klein-int8-convrot.safetensors"
TEXT = "qwen3vl_4b_int8_convrot.safetensors"
VAE = "flux2-vae.safetensors"
BLOCK_MATRICES = re.compile(
    r"(blocks\.\d+|blocks\.\w+\.\d+)\.(q_proj|k_proj|v_proj|attn_out|mlp_in|mlp_out)\.weight$"
)
TE_MATRICES = re.compile(r"model\.layers\.\d+\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")


def tiny_transformer(seed: int, flow_map: bool = False, joint: int = JOINT) -> Any:
    from diffusers import Flux3Transformer2DModel

    torch.manual_seed(seed)
    model = Flux3Transformer2DModel(
        in_channels=128,
        cond_in_channels=128,
        num_layers=1,
        num_single_layers=2,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=joint,
        timestep_channels=64,
        mlp_ratio=2.0,
        axes_dims_rope=(4, 4, 4, 4),
        flow_map=flow_map,
    )
    return _randomize(model, seed, 0.05).eval()


_EXACT = {
    "timestep_embedder.linear_1.weight": "time_in.in_layer.weight",
    "timestep_embedder.linear_2.weight": "time_in.out_layer.weight",
    "target_timestep_embedder.linear_1.weight": "ref_time_in.in_layer.weight",
    "target_timestep_embedder.linear_2.weight": "ref_time_in.out_layer.weight",
    "proj_out.weight": "final_layer.image.linear.weight",
    "norm_out.linear.weight": "final_layer.image.adaLN_modulation.1.weight",
}
_PREFIXES = {
    "x_embedders.": "emb_in.",
    "context_embedder.": "txt_in.",
    "mode_blocks.": "content_mode_blocks.",
    "single_transformer_blocks.": "single_blocks.",
}
_SUFFIXES = {
    "attn.to_q.weight": "q_proj.weight",
    "attn.to_k.weight": "k_proj.weight",
    "attn.to_v.weight": "v_proj.weight",
    "attn.to_out.0.weight": "attn_out.weight",
    "attn.norm_q.weight": "norm.query_norm.scale",
    "attn.norm_k.weight": "norm.key_norm.scale",
    "ff.linear_in.weight": "mlp_in.weight",
    "ff.linear_out.weight": "mlp_out.weight",
}


def flux3_to_comfy(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """diffusers' names → Black Forest Labs' (ComfyUI's files); the output adaLN as [shift, scale]."""
    out = {}
    for key, value in state.items():
        value = value.contiguous()
        if key in _EXACT:
            if key == "norm_out.linear.weight":
                scale, shift = value.chunk(2, dim=0)
                value = torch.cat([shift, scale])
            out[_EXACT[key]] = value
            continue
        new = next((n + key[len(o) :] for o, n in _PREFIXES.items() if key.startswith(o)), key)
        new = new.replace(".linear.weight", ".lin.weight")  # the modulations
        new = next((new[: -len(o)] + n for o, n in _SUFFIXES.items() if new.endswith(o)), new)
        out[new] = value
    return out


def tiny_text_encoder(seed: int) -> Any:
    """Qwen3-VL 4B's language model in miniature: Qwen3 layers (q/k norms), the full vocabulary."""
    from transformers import Qwen3Config, Qwen3Model

    from engine.diffusion.llm_encoder import LLMEncoder

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=QWEN_VOCAB,
        hidden_size=TE_HIDDEN,
        intermediate_size=2 * TE_HIDDEN,
        num_hidden_layers=TE_LAYERS,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=8,
        rms_norm_eps=1e-6,
        rope_theta=5_000_000.0,
        tie_word_embeddings=False,
    )
    return _randomize(LLMEncoder(Qwen3Model(config)), seed, 0.1)


def write_files(models: Path, seed: int = 60) -> dict[str, Any]:
    """The four files of ComfyUI's Flux 3 Klein templates (base and distilled diffusion models)."""
    text = tiny_text_encoder(seed)
    base = tiny_transformer(seed + 1)
    distilled = tiny_transformer(seed + 2, flow_map=True)
    vae = tiny_flux2_vae(seed + 3)
    states = {}
    for name, model in ((BASE, base), (DISTILLED, distilled)):
        states[name] = quantise_convrot(flux3_to_comfy(model.state_dict()), 16, BLOCK_MATRICES)
        _save(models / "diffusion_models" / name, states[name], torch.bfloat16)
    _save(
        models / "text_encoders" / TEXT,
        quantise_convrot(qwen_file_state(text), 16, TE_MATRICES),
        torch.bfloat16,
    )
    _save(models / "vae" / VAE, flux2_vae_file_state(vae), None)
    return {"text": text, "base": base, "distilled": distilled, "vae": vae, "states": states}


def t2i_workflow(
    unet: str = BASE, seed: int = 1, steps: int = 2, cfg: float = 3.5, sampler: str = "euler"
) -> dict[str, Any]:
    """The core of ComfyUI's Flux 3 Klein text-to-image template (its subgraph, upsampler off)."""

    def node(cls: str, **inputs: Any) -> dict[str, Any]:
        return {"class_type": cls, "inputs": inputs}

    settings = {"seed": seed, "steps": steps, "cfg": cfg, "sampler_name": sampler, "scheduler": "simple"}
    return {
        "1": node("UNETLoader", unet_name=unet, weight_dtype="default"),
        "2": node("CLIPLoader", clip_name=TEXT, type="flux3", device="default"),
        "3": node("VAELoader", vae_name=VAE),
        "4": node("CLIPTextEncode", text="a red fox in snow", clip=["2", 0]),
        "5": node("CLIPTextEncode", text="", clip=["2", 0]),
        "6": node("EmptyFlux2LatentImage", width=64, height=48, batch_size=1),
        "7": node(
            "KSampler",
            **settings,
            denoise=1.0,
            model=["1", 0],
            positive=["4", 0],
            negative=["5", 0],
            latent_image=["6", 0],
        ),
        "8": node("VAEDecode", samples=["7", 0], vae=["3", 0]),
        "9": node("SaveImage", images=["8", 0], filename_prefix="flux3"),
    }


def edit_workflow(unet: str = BASE, seed: int = 1, steps: int = 2) -> dict[str, Any]:
    """The edit template's core: a reference through ReferenceMultiLatent on both conditionings, the
    latent on its size."""
    prompt = t2i_workflow(unet, seed, steps)
    prompt["10"] = {
        "class_type": "EmptyImage",
        "inputs": {"width": 80, "height": 64, "batch_size": 1, "color": 0xFF0000},
    }
    prompt["11"] = {
        "class_type": "ReferenceMultiLatent",
        "inputs": {
            "positive": ["4", 0],
            "negative": ["5", 0],
            "vae": ["3", 0],
            "images.image0": ["10", 0],
            "mode": "resize",
            "megapixels": 0.01,
        },
    }
    prompt["7"]["inputs"].update(positive=["11", 0], negative=["11", 1], latent_image=["11", 2])
    del prompt["6"]
    return prompt
