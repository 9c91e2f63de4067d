"""Helpers shared by the model-library tests: tiny models, their checkpoints, and output comparisons."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from engine.models.save import save_single_file
from engine.models.tiny import TinyModels, build_tiny
from engine.models.tokenizer import tokenize


def save_tiny(family: str, folder: Path, seed: int = 0) -> tuple[TinyModels, Path]:
    models = build_tiny(family, seed)  # type: ignore[arg-type]
    path = folder / f"tiny_{family}.safetensors"
    save_single_file(
        path, models.unet, models.vae, models.text_encoders, models.family, None, models.prediction_type
    )
    return models, path


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key].dtype == sb[key].dtype, key
        assert torch.equal(sa[key], sb[key]), key


def text_outputs(encoders: list[Any], pad_ids: list[int], prompt: str) -> list[torch.Tensor]:
    """Every encoder's hidden states (all layers) and pooled output for `prompt`."""
    outs = []
    for encoder, pad in zip(encoders, pad_ids, strict=True):
        ids = torch.tensor([tokenize(prompt, pad)])
        result = encoder(ids, output_hidden_states=True)
        outs.extend(result.hidden_states)
        pooled = result.text_embeds if hasattr(result, "text_embeds") else result.pooler_output
        outs.append(pooled)
    return outs


def unet_output(unet: Any, family: str, context: torch.Tensor, pooled: torch.Tensor | None) -> torch.Tensor:
    gen = torch.Generator().manual_seed(1)
    latent = torch.randn(1, unet.config.in_channels, 8, 8, generator=gen)
    extra = {}
    if family == "sdxl":
        extra["added_cond_kwargs"] = {
            "text_embeds": pooled,
            "time_ids": torch.tensor([[64.0, 64.0, 0.0, 0.0, 64.0, 64.0]]),
        }
    return unet(latent, torch.tensor([500]), encoder_hidden_states=context, **extra).sample


def sd_context(encoders: list[Any], pad_ids: list[int], family: str, prompt: str) -> tuple[torch.Tensor, Any]:
    """The UNet's text context as each family builds it (penultimate layers for SD2/SDXL)."""
    states = []
    pooled = None
    for encoder, pad in zip(encoders, pad_ids, strict=True):
        result = encoder(torch.tensor([tokenize(prompt, pad)]), output_hidden_states=True)
        states.append(result.last_hidden_state if family == "sd1" else result.hidden_states[-2])
        pooled = getattr(result, "text_embeds", None)
    return torch.cat(states, dim=-1), pooled
