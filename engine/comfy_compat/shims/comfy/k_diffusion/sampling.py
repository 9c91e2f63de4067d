"""ComfyUI's comfy.k_diffusion.sampling: Loom's samplers under k-diffusion's names and signature.

`sample_<name>(model, x, sigmas, extra_args=None, callback=None, disable=None, **options)` runs
Loom's sampler of that name (engine.sampling); the per-step noise is seeded from
`extra_args["seed"]` as ComfyUI's default_noise_sampler is. `disable` (the progress bar) is
accepted and ignored: Loom reports progress through the step callback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from tqdm.auto import trange

from engine.sampling import SAMPLER_NAMES, default_noise_sampler, get_sampler, get_sigmas_exponential, to_d
from engine.sampling import ancestral_step as get_ancestral_step
from engine.sampling import get_sigmas_karras as _karras
from engine.sampling.registry import noise_sampler_for

__all__ = [
    "BrownianTreeNoiseSampler",
    "default_noise_sampler",
    "get_ancestral_step",
    "get_sigmas_exponential",
    "to_d",
    "trange",
]


def append_zero(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, x.new_zeros([1])])


def get_sigmas_karras(
    n: int, sigma_min: float, sigma_max: float, rho: float = 7.0, device: Any = "cpu"
) -> torch.Tensor:
    return _karras(n, sigma_min, sigma_max, rho).to(device)


class BrownianTreeNoiseSampler:
    """ComfyUI's Brownian-tree noise between `sigma_min` and `sigma_max` (Loom's
    engine.sampling.noise.brownian_tree_noise_sampler, which Loom's SDE samplers use): called with
    (sigma, sigma_next), unit Gaussian noise, the same for the same seed and interval. `transform` maps
    sigmas to the tree's time first (ComfyUI's default: unchanged)."""

    def __init__(
        self,
        x: torch.Tensor,
        sigma_min: Any,
        sigma_max: Any,
        seed: int | None = None,
        transform: Callable[[Any], Any] = lambda t: t,
        cpu: bool = False,
    ) -> None:
        from engine.sampling.noise import brownian_tree_noise_sampler

        self.transform = transform
        low, high = (
            torch.as_tensor(transform(torch.as_tensor(s)), dtype=x.dtype) for s in (sigma_min, sigma_max)
        )
        self._sample = brownian_tree_noise_sampler(x, torch.stack([high, low]), seed, on_cpu=cpu)

    def __call__(self, sigma: Any, sigma_next: Any) -> torch.Tensor:
        low, high = self.transform(torch.as_tensor(sigma)), self.transform(torch.as_tensor(sigma_next))
        return self._sample(low, high)


def _k_diffusion(name: str) -> Callable[..., Any]:
    loom = get_sampler(name)

    def sampler(
        model: Any,
        x: torch.Tensor,
        sigmas: torch.Tensor,
        extra_args: dict[str, Any] | None = None,
        callback: Any = None,
        disable: Any = None,
        noise_sampler: Any = None,
        **options: Any,
    ) -> torch.Tensor:
        if noise_sampler is None:  # ComfyUI's: a Brownian tree for the SDE samplers, seeded from `seed`
            noise_sampler = noise_sampler_for(name, x, sigmas, (extra_args or {}).get("seed"))
        # Flow models (CONST) take the rectified-flow forms of the noise-adding samplers, as in ComfyUI.
        model_sampling = getattr(model, "model_sampling", None)
        run = get_sampler(name, model_sampling) if model_sampling is not None else loom
        return run(
            model, x, sigmas, extra_args=extra_args, callback=callback, noise_sampler=noise_sampler, **options
        )

    sampler.__name__ = sampler.__qualname__ = f"sample_{name}"
    sampler.__doc__ = loom.__doc__
    return sampler


# ddim and uni_pc are not k-diffusion functions in ComfyUI either (comfy.samplers builds them).
for _name in SAMPLER_NAMES:
    if _name != "ddim" and not _name.startswith("uni_pc"):
        globals()[f"sample_{_name}"] = _k_diffusion(_name)
        __all__.append(f"sample_{_name}")
