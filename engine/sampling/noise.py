"""Seeded noise, following ComfyUI's reproducibility conventions.

* The initial latent noise is drawn on the CPU from a generator seeded with the
  workflow seed, so a seed gives the same image on any device.
* Per-step noise for ancestral/SDE samplers comes from a second generator that
  lives on the latent's device and is seeded from the same seed (plus one on the
  CPU, so that it does not replay the initial noise).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

NoiseSampler = Callable[[Tensor, Tensor], Tensor]
"""``noise_sampler(sigma, sigma_next)`` returns unit-variance noise shaped like the latent."""


def prepare_noise(latent: Tensor, seed: int, batch_inds: Sequence[int] | None = None) -> Tensor:
    """Initial noise for ``latent``, drawn on the CPU from ``seed`` and moved to the latent's device.

    Without ``batch_inds`` the whole batch is one ``randn`` call. With ``batch_inds``
    (ComfyUI's ``batch_index``), noise is drawn one image at a time up to the
    largest index, so image ``k`` of a batch gets the same noise as image ``k`` of a
    bigger batch with the same seed.
    """
    generator = torch.Generator(device="cpu").manual_seed(seed)
    if batch_inds is None:
        noise = torch.randn(latent.shape, dtype=latent.dtype, generator=generator, device="cpu")
        return noise.to(latent.device)
    wanted = set(batch_inds)
    per_index: dict[int, Tensor] = {}
    single = [1, *latent.shape[1:]]
    for index in range(max(wanted) + 1):
        draw = torch.randn(single, dtype=latent.dtype, generator=generator, device="cpu")
        if index in wanted:
            per_index[index] = draw
    return torch.cat([per_index[i] for i in batch_inds]).to(latent.device)


def default_noise_sampler(x: Tensor, seed: int | None = None) -> NoiseSampler:
    """ComfyUI's ``default_noise_sampler``: independent Gaussian noise each call.

    With a seed, a generator on ``x``'s device is seeded with ``seed`` (``seed + 1``
    when that device is the CPU); without one, torch's global generator is used.
    The interval arguments are ignored: every call is a fresh draw, unlike a
    Brownian tree whose increments depend on the interval.
    """
    generator: torch.Generator | None = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed + 1 if x.device.type == "cpu" else seed)

    def sample(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)

    return sample
