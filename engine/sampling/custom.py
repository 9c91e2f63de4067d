"""The objects ComfyUI's custom-sampling nodes pass along SIGMAS, SAMPLER and NOISE links.

* SIGMAS is a plain 1-D float tensor of sigmas (decreasing, usually ending with 0).
* SAMPLER is a :class:`SamplerObject`: a sampler name with its extra options (eta, s_noise, r,
  solver_type, order, ...) bound when it is made, so that a guider can run it later.
* NOISE is a :class:`RandomNoise` or :class:`DisableNoise`: a ``seed`` and
  ``generate_noise(latent_dict) -> tensor``, the initial noise for a LATENT dict.

Guiders (CFG, dual CFG, ...) and the SamplerCustom nodes build the denoised-prediction callable and
call :meth:`SamplerObject.sample` with it; see docs/sampling.md.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model
from engine.sampling.model_sampling import ModelSampling
from engine.sampling.noise import prepare_noise
from engine.sampling.registry import get_sampler
from engine.sampling.sample import sample

# Parameters every sampler takes from sample(); they cannot be bound as options.
_RESERVED = frozenset({"model", "x", "sigmas", "extra_args", "callback", "noise_sampler"})


@dataclass(frozen=True)
class SamplerObject:
    """A SAMPLER: which sampling algorithm to run and its options, checked when it is made."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        sampler = get_sampler(self.name)  # ValueError naming the choices for an unknown name
        accepted = set(inspect.signature(sampler).parameters) - _RESERVED
        unknown = sorted(set(self.options) - accepted)
        if unknown:
            raise ValueError(
                f"sampler {self.name!r} has no option(s) {unknown}; it accepts {sorted(accepted)}"
            )
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def sample(
        self,
        model_fn: Model,
        noise: Tensor,
        latent: Tensor,
        sigmas: Tensor,
        *,
        callback: Callback | None = None,
        seed: int | None = None,
        denoise_mask: Tensor | None = None,
        model_sampling: ModelSampling,
        extra_args: dict[str, Any] | None = None,
    ) -> Tensor:
        """Run :func:`engine.sampling.sample` with this sampler's name and options.

        ``model_fn(x, sigma)`` is the guided denoiser; ``noise`` the NOISE object's tensor (zeros for
        DisableNoise); ``latent`` the starting latent in the model's space; ``seed`` seeds the
        per-step noise as ComfyUI seeds it from the NOISE's seed; ``extra_args`` (the guider's
        ``model_options`` and ``seed``) go to every model call.
        """
        return sample(
            model_fn,
            noise,
            latent,
            sigmas,
            self.name,
            model_sampling=model_sampling,
            callback=callback,
            seed=seed,
            denoise_mask=denoise_mask,
            extra_args=extra_args,
            sampler_options=dict(self.options),
        )


@dataclass(frozen=True)
class RandomNoise:
    """NOISE from a seed: ComfyUI's CPU noise, drawn per ``batch_index`` when the latent has one."""

    seed: int

    def generate_noise(self, latent: Mapping[str, Any]) -> Tensor:
        samples = latent["samples"]
        return prepare_noise(samples.cpu(), self.seed, latent.get("batch_index"))


@dataclass(frozen=True)
class DisableNoise:
    """NOISE that adds nothing: zeros shaped like the latent (its seed, 0, still seeds the sampler)."""

    seed: int = 0

    def generate_noise(self, latent: Mapping[str, Any]) -> Tensor:
        samples = latent["samples"]
        return torch.zeros(samples.shape, dtype=samples.dtype, device="cpu")


def model_sampling_of(model: Any) -> ModelSampling:
    """The noise schedule of a MODEL value. Nodes call this rather than reading the attribute, so the
    model object can change shape (model patches) in one place."""
    return model.sampling
