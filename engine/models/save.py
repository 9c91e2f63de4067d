"""Write diffusers/transformers models as one original-layout (LDM) .safetensors checkpoint.

The file is what ComfyUI and A1111 load (`model.diffusion_model.*`, `first_stage_model.*`, and the family's
text-encoder prefixes), and it round-trips through `load_checkpoint` bit-identically. Hyper-parameters no
shape reveals (attention heads, GroupNorm groups, SDXL's time-id width) go into `loom.arch` metadata.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .detect import ARCH_METADATA_KEY, TEXT_PREFIXES, UNET_PREFIX, VAE_PREFIX, Family, PredictionType
from .keymap import canonical_text_state, text_to_original, unet_to_original, vae_to_original

if TYPE_CHECKING:
    import torch


def original_state_dict(
    unet: Any, vae: Any | None, text_encoders: Sequence[Any], family: Family
) -> dict[str, torch.Tensor]:
    """The original single-file layout of the given models, as one state dict."""
    prefixes = TEXT_PREFIXES[family]
    if len(text_encoders) not in (0, len(prefixes)):
        raise ValueError(f"{family} has {len(prefixes)} text encoder(s), got {len(text_encoders)}")
    state = {UNET_PREFIX + k: v for k, v in unet_to_original(unet.state_dict(), unet.config).items()}
    if vae is not None:
        state |= {VAE_PREFIX + k: v for k, v in vae_to_original(vae.state_dict(), vae.config).items()}
    for (prefix, layout), encoder in zip(prefixes, text_encoders, strict=False):
        state |= text_to_original(canonical_text_state(encoder), prefix, layout)
    return state


def arch_hints(unet: Any, vae: Any | None, text_encoders: Sequence[Any]) -> dict[str, Any]:
    """The hyper-parameters `detect_model` cannot read from shapes, for the `loom.arch` metadata."""
    levels = len(unet.config.block_out_channels)
    heads = unet.config.num_attention_heads or unet.config.attention_head_dim
    hints: dict[str, Any] = {
        "unet_heads": list(heads) if isinstance(heads, list | tuple) else [heads] * levels,
        "unet_norm_num_groups": unet.config.norm_num_groups,
        "text_heads": [te.config.num_attention_heads for te in text_encoders],
    }
    if unet.config.addition_time_embed_dim:
        hints["unet_addition_time_embed_dim"] = unet.config.addition_time_embed_dim
    if vae is not None:
        hints["vae_norm_num_groups"] = vae.config.norm_num_groups
    return hints


def save_single_file(
    path: str | Path,
    unet: Any,
    vae: Any | None,
    text_encoders: Sequence[Any],
    family: Family,
    metadata: Mapping[str, str] | None = None,
    prediction_type: PredictionType = "eps",
    dtype: torch.dtype | None = None,
) -> Path:
    """Save the models as an original-layout .safetensors checkpoint; `dtype` casts floating weights.

    `text_encoders` follow the family's order (SDXL: CLIP-L then CLIP-G with projection). The prediction type
    is recorded as `modelspec.prediction_type` ("v" or "epsilon"), which `detect_model` honours.
    """
    from safetensors.torch import save_file

    state = original_state_dict(unet, vae, text_encoders, family)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    header = {
        "modelspec.prediction_type": "v" if prediction_type == "v_prediction" else "epsilon",
        "loom.family": family,
        ARCH_METADATA_KEY: json.dumps(arch_hints(unet, vae, text_encoders)),
        **(metadata or {}),
    }
    path = Path(path)
    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path), metadata=header)
    return path
