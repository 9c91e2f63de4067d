"""Text-to-image with a loaded checkpoint through Loom's sampling library, with KSampler's semantics.

CLIP text encode (last hidden state, SD1 padding), an empty latent of the image size / 8·(VAE factor),
initial noise from `prepare_noise(latent, seed)`, ComfyUI's KSampler sigmas, CFG with cond and uncond in
one batch (`uncond + cfg · (cond − uncond)` on the denoised predictions), then VAE decode of latent / scale.
Prompts of a batch are sampled together, each with its own seed; with a deterministic sampler (euler) that
matches sampling one at a time up to float rounding (a pixel may differ by one level).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from engine.models.checkpoint import LoadedCheckpoint
from engine.sampling import ModelSampling, denoiser, prepare_noise, sample, sigmas_for


@dataclass
class SamplerSettings:
    steps: int = 20
    cfg: float = 7.0
    sampler: str = "euler"
    scheduler: str = "normal"


class TextToImage:
    """Generate images for prompts with fixed sampler settings."""

    def __init__(self, checkpoint: LoadedCheckpoint, settings: SamplerSettings | None = None) -> None:
        self.ckpt = checkpoint
        self.settings = settings or SamplerSettings()
        self.model_sampling = ModelSampling(checkpoint.prediction_type)
        self.latent_channels = int(checkpoint.unet.config.in_channels)
        assert checkpoint.vae is not None
        self.vae_factor = 2 ** (len(checkpoint.vae.config.block_out_channels) - 1)
        self._cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> torch.Tensor:
        """CLIP last hidden states, one [77, width] row per prompt (cached by prompt)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        if missing:
            ids = torch.tensor([self.ckpt.tokenize(p)[0] for p in missing])
            for prompt, hidden in zip(missing, self.ckpt.text_encoders[0](ids)[0], strict=True):
                self._cache[prompt] = hidden
        return torch.stack([self._cache[p] for p in prompts])

    def _model(self, cond: torch.Tensor, uncond: torch.Tensor) -> Any:
        unet = self.ckpt.unet

        def unet_fn(x: torch.Tensor, timestep: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
            return unet(x, timestep, encoder_hidden_states=context).sample

        inner = denoiser(unet_fn, self.model_sampling)
        cfg = self.settings.cfg
        context = torch.cat([cond, uncond])

        def model(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
            out = inner(torch.cat([x, x]), torch.cat([sigma, sigma]), context=context)
            c, u = out.chunk(2)
            return u + cfg * (c - u)

        return model

    @torch.no_grad()
    def latents(self, prompts: list[str], seeds: list[int], size: int = 64) -> torch.Tensor:
        side = size // self.vae_factor
        shape = (1, self.latent_channels, side, side)
        noise = torch.cat([prepare_noise(torch.zeros(shape), seed) for seed in seeds])
        latent = torch.zeros_like(noise)
        cond = self.encode(prompts)
        uncond = self.encode([""] * len(prompts))
        s = self.settings
        sigmas = sigmas_for(self.model_sampling, s.scheduler, s.steps, sampler_name=s.sampler)
        model = self._model(cond, uncond)
        return sample(
            model, noise, latent, sigmas, s.sampler, model_sampling=self.model_sampling, seed=seeds[0]
        )

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> np.ndarray:
        """uint8 NHWC images, as VAEDecode + SaveImage would store them."""
        assert self.ckpt.vae is not None
        images = self.ckpt.vae.decode(latents / self.ckpt.vae_scaling_factor).sample
        images = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        return images.permute(0, 2, 3, 1).numpy()

    def __call__(self, prompts: list[str], seeds: list[int], size: int = 64) -> np.ndarray:
        return self.decode(self.latents(prompts, seeds, size))
