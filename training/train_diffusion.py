"""Train the CLIP text encoder and the UNet together on cached VAE latents, with SD1.x's noise schedule.

eps prediction, `scaled_linear` betas 0.00085 → 0.012 over 1000 steps (the table `ModelSampling("eps")`
samples with), classifier-free-guidance dropout to the empty caption "". Each step captions every scene
afresh, stating each attribute with its `keep` probability. Timesteps are biased towards high noise, where
the layout (and so position) is decided, and the loss is min-SNR weighted; the returned models are EMAs.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from engine.models.tokenizer import tokenize
from engine.sampling.model_sampling import make_betas

from .data import POSITIONS, Obj, caption
from .models import build_text_encoder, build_unet

TIMESTEPS = 1000


@dataclass
class DiffusionConfig:
    minutes: float
    max_steps: int | None = None
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 200
    uncond_prob: float = 0.1
    # A `high_noise_frac` share of timesteps is drawn from [high_noise_start, 1000), the rest uniformly.
    high_noise_frac: float = 0.3
    high_noise_start: int = 600
    min_snr: float | None = 5.0
    # eps-loss weight clamp(1 / SNR, 1, cap): up to x0-loss strength at high noise, where layout is decided.
    high_noise_weight_cap: float = 5.0
    # Share of samples at t = 999 whose input is pure noise, as KSampler's first step sees it (training
    # inputs at t = 999 still carry 6.8 % of the image, from which the model learns to read the layout).
    # Only captions that state every position get them: without one, the layout should come from the noise.
    pure_noise_frac: float = 0.15
    ema_decay: float = 0.999
    keep: dict[str, float] = field(default_factory=lambda: {"colour": 0.8, "size": 0.7, "position": 0.85})
    unet_channels: list[int] | None = None
    seed: int = 0


@dataclass
class TrainedModels:
    unet: Any
    text_encoder: Any
    steps: int
    seconds: float


def alphas_cumprod() -> torch.Tensor:
    return torch.cumprod(1.0 - make_betas("scaled_linear", TIMESTEPS, 0.00085, 0.012), 0).float()


class Captioner:
    """Fresh captions for scenes, tokenized with the real CLIP tokenizer (cached per caption)."""

    def __init__(self, keep: dict[str, float], uncond_prob: float, seed: int) -> None:
        self.keep, self.uncond_prob = keep, uncond_prob
        self.rng = random.Random(seed)
        self.cache: dict[str, list[int]] = {}

    def ids(self, text: str) -> list[int]:
        if text not in self.cache:
            self.cache[text] = tokenize(text)
        return self.cache[text]

    def __call__(self, scenes: list[list[Obj]]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids, and whether each caption states the position of every object."""
        texts = [
            "" if self.rng.random() < self.uncond_prob else caption(scene, self.rng, self.keep)
            for scene in scenes
        ]
        placed = [sum(t.count(p) for p in POSITIONS) == len(s) for t, s in zip(texts, scenes, strict=True)]
        return torch.tensor([self.ids(t) for t in texts]), torch.tensor(placed)


def sample_timesteps(config: DiffusionConfig, count: int, generator: torch.Generator) -> torch.Tensor:
    uniform = torch.randint(0, TIMESTEPS, (count,), generator=generator)
    high = torch.randint(config.high_noise_start, TIMESTEPS, (count,), generator=generator)
    pick_high = torch.rand(count, generator=generator) < config.high_noise_frac
    return torch.where(pick_high, high, uniform)


def train_diffusion(
    latents: torch.Tensor,
    scenes: list[list[Obj]],
    config: DiffusionConfig,
    log: Callable[[str], None] | None = None,
) -> TrainedModels:
    """Train for `config.minutes` of wall-clock time (or `max_steps`); latents are already scaled."""
    torch.manual_seed(config.seed)
    unet = build_unet(config.unet_channels).train()
    text_encoder = build_text_encoder().train()
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / config.warmup))
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text_encoder).eval()
    ema_params = [*ema_unet.parameters(), *ema_text.parameters()]
    captioner = Captioner(config.keep, config.uncond_prob, config.seed)
    abar = alphas_cumprod()
    snr = abar / (1 - abar)
    generator = torch.Generator().manual_seed(config.seed)
    start, step, smoothed = time.monotonic(), 0, None
    bar = tqdm(desc="unet+text", unit="step", total=config.max_steps)
    while step < 3 or (
        time.monotonic() - start < config.minutes * 60
        and (config.max_steps is None or step < config.max_steps)
    ):
        index = torch.randint(0, len(latents), (config.batch_size,), generator=generator)
        x0 = latents[index]
        ids, placed = captioner([scenes[i] for i in index.tolist()])
        t = sample_timesteps(config, config.batch_size, generator)
        pure = (torch.rand(config.batch_size, generator=generator) < config.pure_noise_frac) & placed
        t = torch.where(pure, TIMESTEPS - 1, t)
        noise = torch.randn(x0.shape, generator=generator)
        a = abar[t].view(-1, 1, 1, 1)
        noisy = a.sqrt() * x0 + (1 - a).sqrt() * noise
        # For pure-noise inputs, the eps that makes `noisy == noise` hold exactly.
        target = torch.where(pure.view(-1, 1, 1, 1), (noise - a.sqrt() * x0) / (1 - a).sqrt(), noise)
        noisy = torch.where(pure.view(-1, 1, 1, 1), noise, noisy)
        context = text_encoder(ids)[0]
        eps = unet(noisy, t, encoder_hidden_states=context).sample
        per_sample = (eps - target).pow(2).mean(dim=(1, 2, 3))
        per_sample = per_sample * (1 / snr[t]).clamp(1.0, config.high_noise_weight_cap)
        if config.min_snr is not None:
            per_sample = per_sample * snr[t].clamp(max=config.min_snr) / snr[t]
        loss = per_sample.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        schedule.step()
        decay = min(config.ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        step += 1
        smoothed = loss.item() if smoothed is None else 0.98 * smoothed + 0.02 * loss.item()
        bar.update()
        bar.set_postfix(loss=f"{smoothed:.4f}")
        if log is not None and step % 100 == 0:
            log(f"step {step} loss {smoothed:.5f} t {time.monotonic() - start:.0f}s")
    bar.close()
    for model in (ema_unet, ema_text):
        model.requires_grad_(False)
    return TrainedModels(ema_unet, ema_text, step, time.monotonic() - start)
