"""ComfyUI's comfy.samplers over Loom's sampler: guiders, cond batching, cfg, sampler objects.

`CFGGuider`, `calc_cond_batch`, `cfg_function` and `sampling_function` are the ones Loom's own
KSampler runs (engine.diffusion.guider / guidance), so a pack that calls them, subclasses
CFGGuider or sets model_options hooks gets Loom's sampling with ComfyUI's semantics.
`KSAMPLER(fn)` runs a pack's k-diffusion-style sampler function; `sampler_object(name)` gives one
of Loom's samplers by ComfyUI name.
"""

from __future__ import annotations

from typing import Any

import torch

from comfy.k_diffusion import sampling as k_diffusion_sampling
from engine.diffusion.function_sampler import FunctionSampler
from engine.diffusion.guidance import calc_cond_batch, cfg_function, sampling_function
from engine.diffusion.guider import CFGGuider
from engine.sampling import SAMPLER_NAMES as _LOOM_SAMPLERS
from engine.sampling import SCHEDULER_NAMES as _LOOM_SCHEDULERS
from engine.sampling import calculate_sigmas as _calculate_sigmas
from engine.sampling import sigmas_for, slice_sigmas

KSAMPLER = FunctionSampler
SAMPLER_NAMES: list[str] = list(_LOOM_SAMPLERS)
KSAMPLER_NAMES: list[str] = [n for n in SAMPLER_NAMES if n != "ddim" and not n.startswith("uni_pc")]
SCHEDULER_NAMES: list[str] = list(_LOOM_SCHEDULERS)

__all__ = [
    "KSAMPLER",
    "KSAMPLER_NAMES",
    "SAMPLER_NAMES",
    "SCHEDULER_NAMES",
    "CFGGuider",
    "KSampler",
    "calc_cond_batch",
    "calc_cond_uncond_batch",
    "calculate_sigmas",
    "cfg_function",
    "ksampler",
    "sample",
    "sampler_object",
    "sampling_function",
]


def calculate_sigmas(model_sampling: Any, scheduler_name: str, steps: int) -> torch.Tensor:
    return _calculate_sigmas(model_sampling, scheduler_name, steps)


def calc_cond_uncond_batch(
    model: Any, cond: Any, uncond: Any, x_in: Any, timestep: Any, model_options: dict[str, Any]
) -> tuple[Any, Any]:
    out = calc_cond_batch(model, [cond, uncond], x_in, timestep, model_options)
    return out[0], out[1]


def ksampler(
    sampler_name: str,
    extra_options: dict[str, Any] | None = None,
    inpaint_options: dict[str, Any] | None = None,
) -> FunctionSampler:
    """A SAMPLER running k_diffusion's `sample_<name>` with `extra_options` bound."""
    function = getattr(k_diffusion_sampling, f"sample_{sampler_name}", None)
    if function is None:
        raise ValueError(f"unknown sampler {sampler_name!r}; expected one of {KSAMPLER_NAMES}")
    return FunctionSampler(function, extra_options, inpaint_options)


def sampler_object(name: str) -> FunctionSampler:
    """ComfyUI's sampler by name; ddim is Euler with its inpainting noise drawn from seed + 1."""
    if name == "ddim":
        return ksampler("euler", inpaint_options={"random": True})
    if name.startswith("uni_pc"):
        from engine.sampling import get_sampler

        return FunctionSampler(_loom_function(get_sampler(name)))
    return ksampler(name)


def _loom_function(loom: Any) -> Any:
    def function(
        model: Any,
        x: Any,
        sigmas: Any,
        extra_args: Any = None,
        callback: Any = None,
        disable: Any = None,
        **options: Any,
    ) -> Any:
        return loom(model, x, sigmas, extra_args=extra_args, callback=callback, **options)

    return function


def sample(
    model: Any,
    noise: Any,
    positive: Any,
    negative: Any,
    cfg: float,
    device: Any,
    sampler: Any,
    sigmas: Any,
    model_options: dict[str, Any] | None = None,
    latent_image: Any = None,
    denoise_mask: Any = None,
    callback: Any = None,
    disable_pbar: bool = False,
    seed: int | None = None,
) -> Any:
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return guider.sample(noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed)


class KSampler:
    """ComfyUI's KSampler class: a sampler and scheduler by name, sigmas for steps and denoise."""

    SCHEDULERS = SCHEDULER_NAMES
    SAMPLERS = SAMPLER_NAMES
    DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})

    def __init__(
        self,
        model: Any,
        steps: int,
        device: Any,
        sampler: str | None = None,
        scheduler: str | None = None,
        denoise: float | None = None,
        model_options: dict[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.device = device
        self.scheduler = scheduler if scheduler in self.SCHEDULERS else self.SCHEDULERS[0]
        self.sampler = sampler if sampler in self.SAMPLERS else self.SAMPLERS[0]
        self.denoise = denoise
        self.model_options = model_options or {}
        self.set_steps(steps, denoise)

    def calculate_sigmas(self, steps: int) -> torch.Tensor:
        return sigmas_for(
            self.model.get_model_object("model_sampling"), self.scheduler, steps, 1.0, self.sampler
        )

    def set_steps(self, steps: int, denoise: float | None = None) -> None:
        self.steps = steps
        ms = self.model.get_model_object("model_sampling")
        self.sigmas = sigmas_for(ms, self.scheduler, steps, 1.0 if denoise is None else denoise, self.sampler)

    def sample(
        self,
        noise: Any,
        positive: Any,
        negative: Any,
        cfg: float,
        latent_image: Any = None,
        start_step: int | None = None,
        last_step: int | None = None,
        force_full_denoise: bool = False,
        denoise_mask: Any = None,
        sigmas: Any = None,
        callback: Any = None,
        disable_pbar: bool = False,
        seed: int | None = None,
    ) -> Any:
        sigmas = self.sigmas if sigmas is None else sigmas
        if start_step is not None and start_step >= len(sigmas) - 1:
            return latent_image if latent_image is not None else torch.zeros_like(noise)
        if start_step is not None or last_step is not None:
            sigmas = slice_sigmas(sigmas, start_step, last_step, force_full_denoise)
        latent_image = torch.zeros_like(noise) if latent_image is None else latent_image
        guider = CFGGuider(self.model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return guider.sample(
            noise, latent_image, self.sampler, sigmas, denoise_mask, callback, disable_pbar, seed
        )
