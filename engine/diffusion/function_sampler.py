"""SAMPLER from any k-diffusion-style function: ComfyUI's comfy.samplers.KSAMPLER.

Packs write samplers as `fn(model, x, sigmas, extra_args=None, callback=None, disable=None, **opts)`
and wrap them in KSAMPLER; this runs such a function under the SAMPLER contract guiders call
(`.sample(model_fn, noise, latent, sigmas, *, callback, seed, denoise_mask, model_sampling,
extra_args)`), with
ComfyUI's start-point scaling and inpainting around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class FunctionSampler:
    """A sampler function with bound options (`extra_options`) and inpainting options (`{"random": True}`
    draws the inpainting noise from seed + 1, as ComfyUI's ddim does)."""

    def __init__(
        self,
        sampler_function: Callable[..., Any],
        extra_options: dict[str, Any] | None = None,
        inpaint_options: dict[str, Any] | None = None,
    ) -> None:
        self.sampler_function = sampler_function
        self.extra_options = dict(extra_options or {})
        self.inpaint_options = dict(inpaint_options or {})

    def sample(
        self,
        model_fn: Callable[..., Any],
        noise: Any,
        latent: Any,
        sigmas: Any,
        *,
        callback: Callable[[dict[str, Any]], None] | None = None,
        seed: int | None = None,
        denoise_mask: Any = None,
        model_sampling: Any,
        extra_args: dict[str, Any] | None = None,
    ) -> Any:
        import torch

        from engine.sampling import is_max_denoise

        if len(sigmas) == 0:
            return latent
        sigmas = sigmas.to(device=latent.device, dtype=torch.float32)
        model: Callable[..., Any] = _Denoiser(model_fn, model_sampling)
        if denoise_mask is not None:
            model = _Denoiser(
                self._inpainting(model_fn, model_sampling, denoise_mask.to(latent), latent, noise, seed),
                model_sampling,
            )
        x = model_sampling.noise_scaling(sigmas[0], noise, latent, is_max_denoise(model_sampling, sigmas))
        extra_args = {**(extra_args or {}), "seed": seed}
        samples = self.sampler_function(
            model, x, sigmas, extra_args=extra_args, callback=callback, disable=True, **self.extra_options
        )
        return model_sampling.inverse_noise_scaling(sigmas[-1], samples)

    def _inpainting(
        self,
        model_fn: Callable[..., Any],
        model_sampling: Any,
        mask: Any,
        latent: Any,
        noise: Any,
        seed: int | None,
    ) -> Callable[..., Any]:
        import torch

        if self.inpaint_options.get("random", False):
            generator = torch.Generator(device="cpu").manual_seed((41 if seed is None else seed) + 1)
            noise = torch.randn(noise.shape, generator=generator, device="cpu").to(noise)
        keep = 1.0 - mask

        def masked(x: Any, sigma: Any, **extra_args: Any) -> Any:
            x = x * mask + model_sampling.noise_scaling(sigma, noise, latent) * keep
            return model_fn(x, sigma, **extra_args) * mask + latent * keep

        return masked


class _Denoiser:
    """The denoiser a sampler function calls, carrying the model sampling (as ComfyUI's model wrapper
    does), so that Loom's k-diffusion functions pick their rectified-flow forms for flow models."""

    def __init__(self, function: Callable[..., Any], model_sampling: Any) -> None:
        self.function = function
        self.model_sampling = model_sampling

    def __call__(self, x: Any, sigma: Any, **extra_args: Any) -> Any:
        return self.function(x, sigma, **extra_args)
