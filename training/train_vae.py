"""Train the VAE on rendered scenes, then fold a per-channel latent normalisation into its 1×1 convs.

Plain L1 + L2 on these mostly white images lets colours collapse; weighting the object's pixels ×10 keeps
them. After training, `quant_conv` and `post_quant_conv` are rescaled so that the encoder's mean latents,
times SD1's scaling factor 0.18215, have zero mean and unit variance per channel: the file then needs no
custom scaling factor and the UNet trains on (and KSampler starts from) unit-variance latents.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch
from tqdm import tqdm

from .dataset import SceneSet, to_tensor
from .models import build_vae

SD1_SCALE = 0.18215
KL_WEIGHT = 1e-6
OBJECT_WEIGHT = 10.0


def vae_loss(vae: Any, batch: torch.Tensor) -> torch.Tensor:
    posterior = vae.encode(batch).latent_dist
    recon = vae.decode(posterior.sample()).sample
    weight = 1.0 + (OBJECT_WEIGHT - 1.0) * (batch.min(dim=1, keepdim=True).values < 0.5).float()
    error = recon - batch
    pixel = (weight * (error.abs() + error.pow(2))).mean()
    return pixel + KL_WEIGHT * posterior.kl().mean()


def train_vae(
    data: SceneSet,
    minutes: float,
    batch_size: int = 32,
    lr: float = 1e-3,
    seed: int = 0,
    log: Any = None,
    init: dict[str, torch.Tensor] | None = None,
) -> Any:
    """Train for `minutes` of wall-clock time (at least 3 steps), the learning rate decaying on a cosine
    over that time; `init` continues from an earlier VAE's state dict. Returns the normalised VAE."""
    torch.manual_seed(seed)
    vae = build_vae().train()
    if init is not None:
        vae.load_state_dict(init)
    images = to_tensor(data.images)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    start, step = time.monotonic(), 0
    bar = tqdm(desc="vae", unit="step")
    while step < 3 or time.monotonic() - start < minutes * 60:
        progress = min(1.0, (time.monotonic() - start) / max(minutes * 60, 1e-9))
        for group in opt.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * progress))
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        loss = vae_loss(vae, images[index])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if log is not None and step % 50 == 0:
            log(f"vae step {step} loss {loss.item():.5f} t {time.monotonic() - start:.0f}s")
    bar.close()
    vae.eval().requires_grad_(False)
    normalise_latents(vae, images[:2048])
    return vae


def finetune_decoder(
    vae: Any,
    data: SceneSet,
    minutes: float,
    latent_noise: float = 0.5,
    batch_size: int = 32,
    lr: float = 3e-4,
) -> Any:
    """Train only `post_quant_conv` and the decoder, on latents with added Gaussian noise, for `minutes`.

    The encoder (and so the latent space the UNet learned) stays as it is; the decoder learns to turn the
    slightly-off latents that sampling produces into crisp shapes (sharp square corners).
    """
    images = to_tensor(data.images)
    latents = encode(vae, images)
    params = [*vae.post_quant_conv.parameters(), *vae.decoder.parameters()]
    vae.requires_grad_(False)
    for param in params:
        param.requires_grad_(True)
    vae.decoder.train()
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(1)
    start, step = time.monotonic(), 0
    bar = tqdm(desc="decoder", unit="step")
    while step < 3 or time.monotonic() - start < minutes * 60:
        index = torch.randint(0, len(images), (batch_size,), generator=generator)
        z = latents[index] + latent_noise * torch.randn(latents[index].shape, generator=generator)
        batch = images[index]
        error = vae.decode(z / SD1_SCALE).sample - batch
        weight = 1.0 + (OBJECT_WEIGHT - 1.0) * (batch.min(dim=1, keepdim=True).values < 0.5).float()
        loss = (weight * (error.abs() + error.pow(2))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update()
        bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode(vae: Any, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Mean latents of `images` (NCHW in [-1, 1]), times SD1's scaling factor."""
    chunks = [
        vae.encode(images[i : i + batch_size]).latent_dist.mean for i in range(0, len(images), batch_size)
    ]
    return torch.cat(chunks) * SD1_SCALE


@torch.no_grad()
def normalise_latents(vae: Any, images: torch.Tensor) -> None:
    """Rescale the latent 1×1 convs: `encode` then gives zero-mean, unit-variance channels, same decoding."""
    latents = encode(vae, images)
    mean = latents.mean(dim=(0, 2, 3)) / SD1_SCALE
    scale = 1.0 / latents.std(dim=(0, 2, 3))
    channels = mean.numel()
    quant, post = vae.quant_conv, vae.post_quant_conv
    # quant_conv outputs [mean, logvar]: z' = scale * (z - mean); logvar' = logvar + 2 log scale.
    quant.weight[:channels] *= scale[:, None, None, None]
    quant.bias[:channels] = (quant.bias[:channels] - mean) * scale
    quant.bias[channels:] += 2 * scale.log()
    # post_quant_conv(z) = W z + b = (W / scale) z' + (W mean + b).
    post.bias += post.weight[:, :, 0, 0] @ mean
    post.weight /= scale[None, :, None, None]


@torch.no_grad()
def latent_rgb(vae: Any, images: torch.Tensor) -> dict[str, list[Any]]:
    """Least-squares map from a scaled latent pixel to the RGB (in −1..1) of the image patch it covers.

    Stored as `loom.latent_rgb` metadata ({"factors": 4 × [r, g, b], "bias": [r, g, b]}) for live previews.
    """
    latents = encode(vae, images)
    factor = images.shape[-1] // latents.shape[-1]
    rgb = torch.nn.functional.avg_pool2d(images, factor)
    z = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1]).double()
    target = rgb.permute(0, 2, 3, 1).reshape(-1, 3).double()
    design = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], dim=1)
    solution = torch.linalg.lstsq(design, target).solution
    return {"factors": solution[:-1].tolist(), "bias": solution[-1].tolist()}
