"""Seeded noise, following ComfyUI's reproducibility conventions.

* The initial latent noise is drawn on the CPU from a generator seeded with the
  workflow seed, so a seed gives the same image on any device. As in ComfyUI, that generator is
  torch's global CPU generator (``torch.manual_seed``): what a patch draws from it while sampling
  (HyperTile's tile sizes, a pack's ``torch.rand``) then follows from the seed as it does there.
* Per-step noise for ancestral samplers comes from a second generator that lives
  on the latent's device and is seeded with the same seed. On the CPU its first
  draw therefore replays the initial noise; ComfyUI does exactly that, and matching
  it is what makes a seed give ComfyUI's image.
* The SDE samplers draw their noise from a Brownian tree (torchsde), as ComfyUI's
  ``BrownianTreeNoiseSampler`` does: the noise of an interval is the tree's
  increment over it, so sub-steps of one step see consistent noise.
"""

from __future__ import annotations

import warnings
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
    generator = torch.manual_seed(seed)
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

    With a seed, a generator on ``x``'s device is seeded with ``seed`` (on every
    device, as ComfyUI does); without one, torch's global generator is used.
    The interval arguments are ignored: every call is a fresh draw, unlike a
    Brownian tree whose increments depend on the interval.
    """
    generator: torch.Generator | None = None
    if seed is not None:
        generator = torch.Generator(device=x.device)
        generator.manual_seed(seed)

    def sample(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)

    return sample


def seed_stream_noise(x: Tensor, seed: int | None) -> Callable[..., Tensor]:
    """ComfyUI's ``torch.randn_like`` on the global generator right after ``prepare_noise(seed)``.

    A CPU generator seeded with ``seed`` first draws (and discards) the initial noise shaped like
    ``x``; each call ``sample(sigma, sigma_next, like=t)`` then draws the next noise shaped like
    ``t`` (default ``x``) from that stream. Samplers whose latent changes size use it.
    """
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(seed)
        torch.randn(x.shape, dtype=x.dtype, generator=generator, device="cpu")

    def sample(sigma: Tensor, sigma_next: Tensor, like: Tensor | None = None) -> Tensor:
        target = x if like is None else like
        return torch.randn(target.shape, dtype=target.dtype, generator=generator, device="cpu").to(
            target.device
        )

    return sample


def brownian_tree_noise_sampler(
    x: Tensor, sigmas: Tensor, seed: int | None = None, *, on_cpu: bool = True
) -> NoiseSampler:
    """ComfyUI's ``BrownianTreeNoiseSampler`` over the schedule's nonzero sigma range.

    One ``torchsde.BrownianTree`` (entropy ``seed``; a random one without a seed) shaped
    like ``x`` spans [smallest nonzero sigma, largest sigma]. ``noise_sampler(s, s_next)``
    returns the tree's increment over the interval divided by sqrt(|s_next - s|), so it
    is unit Gaussian. ``on_cpu`` keeps the tree on the CPU (ComfyUI's plain SDE names,
    the same numbers on any device); ``on_cpu=False`` builds it on ``x``'s device, as the
    ``_gpu`` names do, which gives other numbers on a GPU.
    """
    import torchsde  # imported here: it pulls in scipy, which start-up does not need

    positive = sigmas[sigmas > 0]
    t0, t1 = positive.min().detach(), sigmas.max().detach()
    w0 = torch.zeros_like(x)
    if on_cpu:
        t0, t1, w0 = t0.cpu(), t1.cpu(), w0.cpu()
    entropy = seed if seed is not None else int(torch.randint(0, 2**63 - 1, ()).item())
    tree = torchsde.BrownianTree(t0, w0, t1, entropy=entropy)

    def sample(sigma: Tensor, sigma_next: Tensor) -> Tensor:
        low, high = torch.as_tensor(sigma), torch.as_tensor(sigma_next)
        sign = 1.0 if low < high else -1.0
        if sign < 0:
            low, high = high, low
        device, dtype = low.device, low.dtype
        if on_cpu:
            low, high = low.detach().cpu().float(), high.detach().cpu().float()
        with warnings.catch_warnings():
            # torchsde compares float32 query times with its float64 end and warns about a
            # rounding difference at sigma_max; the increment it returns is unaffected.
            warnings.filterwarnings("ignore", message="Should have", category=UserWarning)
            increment = tree(low, high).to(device=device, dtype=dtype) * sign
        return increment / (torch.as_tensor(sigma_next) - torch.as_tensor(sigma)).abs().sqrt()

    return sample
