"""Tiny random-weight ControlNets of the flow families in the layouts people's files have, sized for the
tiny models of flow_fixtures*.py: Stability's SD3.5 (fused qkv, adaLN_modulation, control_type), InstantX's
SD3, Flux (plain, Union, inpainting) and Qwen-Image (Union, inpainting), the last three in diffusers'
names as those files have them, and alibaba-pai's Qwen-Image Fun ControlNet."""

from __future__ import annotations

from typing import Any

import torch

from tests.nodes.flow_fixtures import CLIP_G_WIDTH, CLIP_L_WIDTH, JOINT


def _randomized(model: Any, seed: int, std: float = 0.05) -> dict[str, torch.Tensor]:
    """Every weight random (diffusers zero-initialises the control heads, which would hide them)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


def sd35_controlnet(
    seed: int = 40,
    width: int = 64,
    blocks: int = 1,
    control_type: int = 1,
    pooled: int = CLIP_L_WIDTH + CLIP_G_WIDTH,
) -> dict[str, Any]:
    """Stability's SD3.5 Large ControlNet layout (sd3.5_large_controlnet_{blur,canny,depth})."""
    from diffusers import SD3ControlNetModel

    model = SD3ControlNetModel(
        patch_size=2,
        in_channels=16,
        num_layers=blocks,
        attention_head_dim=64,
        num_attention_heads=width // 64,
        joint_attention_dim=None,
        caption_projection_dim=width,
        pooled_projection_dim=pooled,
        out_channels=16,
        pos_embed_max_size=None,
        pos_embed_type=None,
        use_pos_embed=False,
        force_zeros_for_pooled_projection=False,
    )
    state = _randomized(model, seed)
    out: dict[str, Any] = {"control_type": torch.tensor(float(control_type))}
    renames = {
        "attn.to_out.0.": "attn.proj.",
        "ff.net.0.proj.": "mlp.fc1.",
        "ff.net.2.": "mlp.fc2.",
        "norm1.linear.": "adaLN_modulation.1.",
    }
    for key, value in state.items():
        if ".attn.to_k." in key or ".attn.to_v." in key:
            continue
        if ".attn.to_q." in key:
            parts = [state[key.replace("to_q", name)] for name in ("to_q", "to_k", "to_v")]
            out[key.replace("to_q", "qkv")] = torch.cat(parts)
            continue
        for new, old in renames.items():
            key = key.replace(new, old)
        out[key] = value
    return out


def sd3_instantx_controlnet(
    seed: int = 41,
    width: int = 128,
    blocks: int = 1,
    inpaint: bool = False,
    pooled: int = CLIP_L_WIDTH + CLIP_G_WIDTH,
) -> dict[str, Any]:
    """InstantX's SD3 ControlNet (diffusers' SD3ControlNetModel names), for an SD3 model `width` wide."""
    from diffusers import SD3ControlNetModel

    model = SD3ControlNetModel(
        sample_size=32,
        patch_size=2,
        in_channels=16,
        num_layers=blocks,
        attention_head_dim=64,
        num_attention_heads=width // 64,
        joint_attention_dim=JOINT,
        caption_projection_dim=width,
        pooled_projection_dim=pooled,
        out_channels=16,
        pos_embed_max_size=16,
        extra_conditioning_channels=1 if inpaint else 0,
    )
    return _randomized(model, seed)


def flux_instantx_controlnet(seed: int = 42, union: bool = False, inpaint: bool = False) -> dict[str, Any]:
    """InstantX's Flux ControlNet (diffusers' FluxControlNetModel names); Union ones have 10 modes."""
    from diffusers import FluxControlNetModel

    model = FluxControlNetModel(
        in_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=JOINT,
        pooled_projection_dim=CLIP_L_WIDTH,
        guidance_embeds=True,
        num_mode=10 if union else None,
    )
    if inpaint:
        model.controlnet_x_embedder = torch.nn.Linear(68, 128)
    return _randomized(model, seed)


def qwen_instantx_controlnet(seed: int = 43, inpaint: bool = False, context: int = 128) -> dict[str, Any]:
    """InstantX's Qwen-Image ControlNet (Union; Inpainting takes the mask: 68 hint channels)."""
    from diffusers import QwenImageControlNetModel

    model = QwenImageControlNetModel(
        patch_size=2,
        in_channels=64,
        out_channels=16,
        num_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=context,
        extra_condition_channels=4 if inpaint else 0,
    )
    return _randomized(model, seed)


def xlabs_flux_controlnet(seed: int = 48) -> dict[str, Any]:
    """XLabs' Flux ControlNet layout: Flux's own names for two double blocks and the embedders (no final
    layer), `controlnet_blocks.N`, `pos_embed_input` and the pixel hint encoder `input_hint_block.*`."""
    from diffusers import FluxTransformer2DModel

    from tests.nodes.flow_fixtures import flux_to_comfy

    flux = FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,
        num_layers=2,
        num_single_layers=0,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=JOINT,
        pooled_projection_dim=CLIP_L_WIDTH,
        guidance_embeds=True,
    )
    state = {k: v for k, v in flux_to_comfy(_randomized(flux, seed), 2, 0).items() if "final_layer" not in k}
    generator = torch.Generator().manual_seed(seed + 1)
    for index in range(2):
        state[f"controlnet_blocks.{index}.weight"] = 0.05 * torch.randn(128, 128, generator=generator)
        state[f"controlnet_blocks.{index}.bias"] = 0.05 * torch.randn(128, generator=generator)
    state["pos_embed_input.weight"] = 0.05 * torch.randn(128, 64, generator=generator)
    state["pos_embed_input.bias"] = 0.05 * torch.randn(128, generator=generator)
    for index in range(0, 16, 2):
        inputs = 3 if index == 0 else 16
        state[f"input_hint_block.{index}.weight"] = 0.2 * torch.randn(16, inputs, 3, 3, generator=generator)
        state[f"input_hint_block.{index}.bias"] = 0.05 * torch.randn(16, generator=generator)
    return state


def qwen_fun_controlnet(seed: int = 49, width: int = 128, blocks: int = 2) -> dict[str, Any]:
    """alibaba-pai's Qwen-Image Fun ControlNet layout (Qwen-Image-2512-Fun-Controlnet-Union): `control_img_in`
    from 33 latent channels × 2×2 patches, `control_blocks.N` (diffusers' Qwen-Image block names) with
    `before_proj` on the first and `after_proj` on each."""
    from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

    state: dict[str, torch.Tensor] = {}
    for index in range(blocks):
        block = QwenImageTransformerBlock(dim=width, num_attention_heads=width // 128, attention_head_dim=128)
        state |= {f"control_blocks.{index}.{k}": v for k, v in _randomized(block, seed + index).items()}
        names = ("before_proj", "after_proj") if index == 0 else ("after_proj",)
        for name in names:
            projection = torch.nn.Linear(width, width)
            weights = _randomized(projection, seed + 100 * index + len(name))
            state |= {f"control_blocks.{index}.{name}.{k}": v for k, v in weights.items()}
    state |= {f"control_img_in.{k}": v for k, v in _randomized(torch.nn.Linear(132, width), seed - 1).items()}
    return state
