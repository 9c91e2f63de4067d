"""ComfyUI's comfy.diffusers_convert: diffusers/transformers state dicts renamed to the original
single-file (LDM / open_clip) layout, over Loom's key maps (engine/models/keymap.py)."""

from __future__ import annotations

import re
from typing import Any

import torch

from engine.models.keymap import text_to_original, vae_to_original

__all__ = ["convert_text_enc_state_dict", "convert_text_enc_state_dict_v20", "convert_vae_state_dict"]


def convert_vae_state_dict(vae_state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A diffusers AutoencoderKL state dict with the original VAE's keys (`encoder.down.0.block.0...`,
    attention projections as 1×1 convolutions)."""
    ups = {int(m.group(1)) for k in vae_state_dict if (m := re.match(r"decoder\.up_blocks\.(\d+)\.", k))}
    levels = max(ups) + 1 if ups else 4
    return vae_to_original(vae_state_dict, {"block_out_channels": [0] * levels})


def convert_text_enc_state_dict(text_enc_dict: dict[str, Any]) -> dict[str, Any]:
    """CLIP-L keeps transformers' key names in ComfyUI's layout: returned as is."""
    return text_enc_dict


def convert_text_enc_state_dict_v20(text_enc_dict: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A transformers OpenCLIP text model (keys under `prefix`) in open_clip's layout
    (`transformer.resblocks.N.attn.in_proj_weight`, `ln_final`, `text_projection`...); keys outside
    `prefix` are dropped, as in ComfyUI."""
    canonical = {
        key[len(prefix) :].removeprefix("text_model."): value
        for key, value in text_enc_dict.items()
        if key.startswith(prefix) and not key.endswith("position_ids")
    }
    return text_to_original(canonical, "", "open_clip")
