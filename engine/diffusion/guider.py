"""GUIDER: what turns a patched MODEL and conditioning into the denoiser a sampler calls.

`CFGGuider` follows ComfyUI's comfy.samplers.CFGGuider: `set_conds`, `set_cfg`, `predict_noise`
(ComfyUI's name for the guided denoised prediction) and `sample(noise, latent_image, sampler,
sigmas, denoise_mask, callback, disable_pbar, seed)`, which returns the latent in the VAE's space.
It applies the ModelPatcher's patches for the run, honours every model_options hook (cfg, pre/post
cfg, unet wrapper, denoise mask function, transformer patches) and passes
`transformer_options["sample_sigmas"]`. Its subclasses, ComfyUI's Basic, DualCFG and PerpNeg guiders, are in
`engine.diffusion.custom_guiders`.

`sampler` is a Loom sampler name or a SAMPLER object with
`.sample(model_fn, noise, latent, sigmas, *, callback, seed, denoise_mask, model_sampling, extra_args)`;
`extra_args` holds ComfyUI's `model_options` and `seed`, and `model_fn(x, sigma, model_options=...)`
runs the guider with the options a sampler passes back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from engine import threads
from engine.diffusion import control_conds
from engine.diffusion.guidance import (
    convert_cond,
    resolve_conds,
    sampling_function,
)
from engine.diffusion.patcher_extension import (
    WrapperExecutor,
    WrappersMP,
    get_all_wrappers,
    merge_nested_dicts,
)
from engine.diffusion.process_conds import add_opposite_areas, share_with_uncond

StepCallback = Callable[[int, Any, Any, int], None]
"""ComfyUI's sampling callback: `callback(step, denoised, x, total_steps)`."""


class CFGGuider:
    """Classifier-free guidance of one positive and one negative conditioning."""

    def __init__(self, model_patcher: Any) -> None:
        self.model_patcher = model_patcher
        self.model_options: dict[str, Any] = model_patcher.model_options
        self.original_conds: dict[str, list[dict[str, Any]]] = {}
        self.conds: dict[str, list[dict[str, Any]]] = {}
        self.cfg = 1.0
        self.inner_model: Any = model_patcher.model

    def set_conds(self, positive: list[Any], negative: list[Any]) -> None:
        self.inner_set_conds({"positive": positive, "negative": negative})

    def set_cfg(self, cfg: float) -> None:
        self.cfg = cfg

    def inner_set_conds(self, conds: dict[str, list[Any]]) -> None:
        for name, conditioning in conds.items():
            self.original_conds[name] = convert_cond(
                conditioning, "negative" if name == "negative" else "positive"
            )

    def __call__(
        self, x: Any, timestep: Any, model_options: dict[str, Any] | None = None, seed: int | None = None
    ) -> Any:
        return self.outer_predict_noise(x, timestep, model_options or {}, seed)

    def outer_predict_noise(
        self, x: Any, timestep: Any, model_options: dict[str, Any] | None = None, seed: int | None = None
    ) -> Any:
        """`predict_noise` through the model's PREDICT_NOISE wrappers (ComfyUI's order and arguments)."""
        return _executor(self.predict_noise, self, WrappersMP.PREDICT_NOISE, self.model_options).execute(
            x, timestep, model_options or {}, seed
        )

    def predict_noise(
        self, x: Any, timestep: Any, model_options: dict[str, Any] | None = None, seed: int | None = None
    ) -> Any:
        return sampling_function(
            self.inner_model,
            x,
            timestep,
            self.conds.get("negative"),
            self.conds.get("positive"),
            self.cfg,
            model_options=model_options,
            seed=seed,
        )

    def prepare_conds(self, latent_shape: Any, device: Any, seed: int | None = None) -> None:
        """Resolve areas and masks for this latent size, add opposite areas and turn unCLIP and GLIGEN
        conditioning into model inputs (ComfyUI's process_conds); `predict_noise` uses the result."""
        self.conds = {
            name: resolve_conds([_on(dict(e), device) for e in entries], latent_shape)
            for name, entries in self.original_conds.items()
        }
        from engine.diffusion.unclip import encode_unclip_conds

        for entries in self.conds.values():
            encode_unclip_conds(self.model_patcher.model, entries, seed)
        add_opposite_areas(self.conds)
        share_with_uncond(self.conds)

    def sample(
        self,
        noise: Any,
        latent_image: Any,
        sampler: Any,
        sigmas: Any,
        denoise_mask: Any = None,
        callback: StepCallback | None = None,
        disable_pbar: bool = False,
        seed: int | None = None,
    ) -> Any:
        """Denoise `latent_image` (VAE space) from `noise` along `sigmas`; returns the VAE-space result.
        The run goes through the model's OUTER_SAMPLE wrappers; for its duration `model_options` is
        a copy, so what a wrapper adds to it (e.g. an APPLY_MODEL wrapper) lasts only this run."""
        from engine.diffusion.model_options import create_model_options_clone

        if sigmas.shape[-1] == 0:
            return latent_image
        check_image_latent(self.model_patcher.model, latent_image)
        original = self.model_options
        self.model_options = create_model_options_clone(original)
        try:
            _add_patcher_extensions(self.model_patcher, self.model_options)
            executor = _executor(self.outer_sample, self, WrappersMP.OUTER_SAMPLE, self.model_options)
            return executor.execute(
                noise, latent_image, sampler, sigmas, denoise_mask, callback, disable_pbar, seed
            )
        finally:
            self.model_options = original

    def outer_sample(
        self,
        noise: Any,
        latent_image: Any,
        sampler: Any,
        sigmas: Any,
        denoise_mask: Any = None,
        callback: StepCallback | None = None,
        disable_pbar: bool = False,
        seed: int | None = None,
    ) -> Any:
        """The sampling run inside the OUTER_SAMPLE wrappers: model on its device, patches applied."""
        import torch

        from engine.diffusion.devices import manager
        from engine.diffusion.model_options import create_model_options_clone

        patcher = self.model_patcher
        device = manager().use(patcher.unet)
        self.prepare_conds(latent_image.shape, device, seed)
        options = create_model_options_clone(self.model_options)
        options.setdefault("transformer_options", {})["sample_sigmas"] = sigmas
        mask = _latent_mask(denoise_mask, latent_image).to(device) if denoise_mask is not None else None
        positions = latent_image.shape[0] * latent_image.shape[-2] * latent_image.shape[-1]
        work = threads.work_of(patcher.unet, positions)
        with torch.no_grad(), threads.limited(work), patcher.applied() as model:
            self.inner_model = model
            controls = control_conds.prepare(model, self.conds)
            latent = model.process_latent_in(latent_image.float().to(device))
            _patcher_call(patcher, "pre_run")
            try:
                result = _run_sampler(
                    self, options, sampler, noise.float().to(device), latent, sigmas, mask, callback, seed
                )
            finally:
                control_conds.cleanup(controls)
                _patcher_call(patcher, "cleanup")
            return model.process_latent_out(result.float())


def _add_patcher_extensions(patcher: Any, model_options: dict[str, Any]) -> None:
    """The ModelPatcher's own wrappers and callbacks join the run's transformer_options (ComfyUI's
    prepare_model_patcher), where the sampler and the model look them up."""
    transformer_options = model_options.setdefault("transformer_options", {})
    for registry in ("wrappers", "callbacks"):
        own = getattr(patcher, registry, None)
        if own:
            merge_nested_dicts(transformer_options.setdefault(registry, {}), own, copy_dict1=False)


def _patcher_call(patcher: Any, name: str) -> None:
    """ON_PRE_RUN / ON_CLEANUP callbacks of a ModelPatcher (objects without them are skipped)."""
    method = getattr(patcher, name, None)
    if callable(method):
        method()


def _executor(original: Callable[..., Any], owner: Any, kind: str, model_options: dict[str, Any]) -> Any:
    """ComfyUI's WrapperExecutor over `original` with the model's wrappers of `kind`."""
    return WrapperExecutor.new_class_executor(
        original, owner, get_all_wrappers(kind, model_options, is_model_options=True)
    )


def _run_sampler(
    guider: CFGGuider,
    options: dict[str, Any],
    sampler: Any,
    noise: Any,
    latent: Any,
    sigmas: Any,
    mask: Any,
    callback: StepCallback | None,
    seed: int | None,
) -> Any:
    from engine.sampling import sample

    model_sampling = guider.model_patcher.get_model_object("model_sampling")
    # As in ComfyUI, samplers get the model_options in extra_args and may pass their own copy back
    # (the CFG++ samplers add a post-cfg function that captures the uncond prediction).
    extra_args = {"model_options": options, "seed": seed}

    def model_fn(x: Any, sigma: Any, model_options: dict[str, Any] | None = None, **_: Any) -> Any:
        return guider(x, sigma, model_options=options if model_options is None else model_options, seed=seed)

    if mask is not None and "denoise_mask_function" in options:
        model_fn, mask = _masked(guider, options, model_fn, model_sampling, mask, latent, noise, sigmas), None
    total = max(len(sigmas) - 1, 0)
    on_step = None
    if callback is not None:
        step_callback = callback

        def on_step(step: dict[str, Any]) -> None:
            step_callback(step["i"], step["denoised"], step["x"], total)

    def run(
        model_wrap: Any, sigmas: Any, extra_args: dict[str, Any], callback: Any, noise: Any,
        latent_image: Any, denoise_mask: Any, disable_pbar: bool = False,
    ) -> Any:  # fmt: skip
        """The sampler call with ComfyUI's KSAMPLER.sample arguments, so SAMPLER_SAMPLE wrappers
        (which may change sigmas, noise, the latent or the seed) wrap it unchanged."""
        seed = extra_args.get("seed")
        if isinstance(sampler, str):
            return sample(
                model_fn, noise, latent_image, sigmas, sampler, model_sampling=model_sampling,
                callback=callback, seed=seed, denoise_mask=denoise_mask, extra_args=extra_args,
            )  # fmt: skip
        kwargs: dict[str, Any] = {"callback": callback, "seed": seed, "denoise_mask": denoise_mask}
        if _accepts(sampler.sample, "extra_args"):  # SAMPLER objects written before extra_args existed
            kwargs["extra_args"] = extra_args
        return sampler.sample(model_fn, noise, latent_image, sigmas, model_sampling=model_sampling, **kwargs)

    wrappers = get_all_wrappers(WrappersMP.SAMPLER_SAMPLE, options, is_model_options=True)
    executor = WrapperExecutor.new_class_executor(run, sampler, wrappers)
    return executor.execute(guider, sigmas, extra_args, on_step, noise, latent, mask, False)


def _accepts(function: Any, name: str) -> bool:
    import inspect

    parameters = inspect.signature(function).parameters.values()
    return any(p.name == name or p.kind is p.VAR_KEYWORD for p in parameters)


def _masked(
    guider: CFGGuider,
    options: dict[str, Any],
    model_fn: Any,
    model_sampling: Any,
    mask: Any,
    latent: Any,
    noise: Any,
    sigmas: Any,
) -> Any:
    """Inpainting with a denoise_mask_function (ComfyUI's KSamplerX0Inpaint): the function may reshape
    the mask at each step before the area outside it is pinned to the re-noised original."""
    function = options["denoise_mask_function"]

    def masked(x: Any, sigma: Any, **extra: Any) -> Any:
        step_mask = function(sigma, mask, extra_options={"model": guider, "sigmas": sigmas})
        keep = 1.0 - step_mask
        x = x * step_mask + model_sampling.noise_scaling(sigma, noise, latent) * keep
        return model_fn(x, sigma, **extra) * step_mask + latent * keep

    return masked


def _on(entry: dict[str, Any], device: Any) -> dict[str, Any]:
    return {k: v.to(device) if hasattr(v, "to") and hasattr(v, "dtype") else v for k, v in entry.items()}


def _latent_mask(mask: Any, samples: Any) -> Any:
    """A noise mask [B?, (C?), H, W] resized to the latent and broadcast over its batch and channels
    (and over the frames of a 5-D latent: the same mask on the image and each of its layers)."""
    import torch.nn.functional as F

    mask = mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float()
    mask = F.interpolate(mask, size=samples.shape[-2:], mode="bilinear")
    if mask.shape[0] < samples.shape[0]:
        mask = mask.repeat(samples.shape[0] // mask.shape[0] + 1, 1, 1, 1)[: samples.shape[0]]
    return mask if samples.ndim == 4 else mask.unsqueeze(2)


def check_image_latent(model: Any, latent: Any) -> None:
    """Models denoise [batch, channels, height, width] latents, and those that take frames (Qwen-Image
    Layered: `takes_frames`) 5-D ones [batch, channels, frames, height, width] too; any other shape gets
    a message instead of a shape error deep inside the sampler."""
    if latent.ndim == 4 or (latent.ndim == 5 and getattr(model, "takes_frames", False)):
        return
    family = getattr(model, "family", "this")
    raise ValueError(
        f"the {family} model samples image latents [batch, channels, height, width], but the latent has "
        f"{latent.ndim} dimensions {list(latent.shape)}; a 5-D latent holds frames or layers (e.g. "
        "EmptyQwenImageLayeredLatentImage's): load a Qwen-Image Layered diffusion model for it "
        "(Loom runs no video models)"
    )
