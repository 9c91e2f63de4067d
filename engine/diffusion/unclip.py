"""unCLIP: image embeddings as the UNet's extra (ADM) input, with noise augmentation.

unCLIPConditioning puts `unclip_conditioning` (a list of {clip_vision_output, strength,
noise_augmentation}) on CONDITIONING entries. Before sampling, `encode_unclip_conds` turns it into what the
model takes, as ComfyUI's SD21UNCLIP.encode_adm / sdxl_pooled do:

- each image embedding is noised by `CLIPEmbeddingNoiseAugmentation` (the squaredcos_cap_v2 schedule of
  1000 steps, "Hierarchical Text-Conditional Image Generation with CLIP Latents", Ramesh et al. 2022) at
  level round(999 · noise_augmentation), and joined with the sinusoidal embedding of that level, times
  strength; several embeddings are summed and noised once more at `unclip_noise_augment_merge`;
- an SD2.1 unCLIP UNet takes the result as its class embedding input `y` (zeros where an entry has none);
- SDXL ("revision") takes its first half (1280 values) in place of the pooled text embedding.

The noise is drawn from `seed - 10`, as ComfyUI does; ComfyUI draws the merge step's noise from the global
generator, Loom from the same seed, so results with several images are reproducible but not ComfyUI's.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def squaredcos_betas(steps: int = 1000, max_beta: float = 0.999) -> torch.Tensor:
    """Betas of the cosine schedule (Nichol & Dhariwal 2021, "squaredcos_cap_v2"), in float64."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    return torch.tensor(
        [min(1 - alpha_bar((i + 1) / steps) / alpha_bar(i / steps), max_beta) for i in range(steps)],
        dtype=torch.float64,
    )


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [N, dim]: cosines then sines (the LDM UNet's order)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = timesteps[:, None].float().cpu() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding.to(timesteps.device)


class CLIPEmbeddingNoiseAugmentation:
    """Noise an image embedding to a level of a DDPM schedule and embed the level (ComfyUI's class of
    this name, with data mean 0 and std 1 as ComfyUI uses it)."""

    def __init__(self, timestep_dim: int, steps: int = 1000) -> None:
        alphas_cumprod = torch.cumprod(1.0 - squaredcos_betas(steps), dim=0)
        self.sqrt_alphas_cumprod = alphas_cumprod.sqrt().float()
        self.sqrt_one_minus_alphas_cumprod = (1.0 - alphas_cumprod).sqrt().float()
        self.max_noise_level = steps
        self.dim = timestep_dim

    def __call__(
        self, x: torch.Tensor, noise_level: int, seed: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = x.reshape(1, -1) if x.ndim == 1 else x
        generator = torch.manual_seed(seed) if seed is not None else None
        noise = torch.randn(x.size(), dtype=x.dtype, generator=generator).to(x.device)
        z = (
            self.sqrt_alphas_cumprod[noise_level] * x
            + self.sqrt_one_minus_alphas_cumprod[noise_level] * noise
        )
        level = torch.tensor([noise_level], device=x.device)
        return z, timestep_embedding(level, self.dim).to(x.dtype)

    def level(self, noise_augmentation: float) -> int:
        return round((self.max_noise_level - 1) * noise_augmentation)


def unclip_adm(
    unclip_conditioning: list[dict[str, Any]],
    augmentor: CLIPEmbeddingNoiseAugmentation,
    device: Any,
    merge: float = 0.0,
    seed: int | None = None,
) -> torch.Tensor:
    """The ADM vector [1, 2·dim] of a list of unCLIP conditionings (ComfyUI's unclip_adm)."""
    outputs = []
    for item in unclip_conditioning:
        for embed in item["clip_vision_output"].image_embeds:
            level = augmentor.level(item["noise_augmentation"])
            noised, level_emb = augmentor(embed.to(device).float(), level, seed)
            outputs.append(torch.cat((noised, level_emb), dim=1) * item["strength"])
    if len(outputs) == 1:
        return outputs[0]
    summed = torch.stack(outputs).sum(0)
    noised, level_emb = augmentor(summed[:, : augmentor.dim], augmentor.level(merge), seed)
    return torch.cat((noised, level_emb), dim=1)


def encode_unclip_conds(model: Any, entries: list[dict[str, Any]], seed: int | None) -> None:
    """Give each entry the model input its unclip_conditioning makes (in place): `y` for an SD2.1 unCLIP
    UNet, `pooled_output` for SDXL; entries of other models are left as they are."""
    augmentor = getattr(model, "noise_augmentor", None)
    if augmentor is None:
        return
    noise_seed = None if seed is None else seed - 10
    adm_channels = getattr(model, "adm_channels", None)
    for entry in entries:
        unclip = entry.get("unclip_conditioning")
        device = entry["cross_attn"].device
        if adm_channels is not None:  # SD2.1 unCLIP: every entry feeds the class embedding
            merge = float(entry.get("unclip_noise_augment_merge", 0.05))
            entry["y"] = (
                unclip_adm(unclip, augmentor, device, merge, noise_seed)
                if unclip
                else torch.zeros((1, adm_channels), device=device)
            )
        elif unclip:
            entry["pooled_output"] = unclip_adm(unclip, augmentor, device, 0.0, noise_seed)[
                :, : augmentor.dim
            ]
