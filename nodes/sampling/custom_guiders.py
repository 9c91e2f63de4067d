"""Guiders and the custom samplers that use them (ComfyUI's nodes_custom_sampler names and inputs).

A GUIDER (engine.diffusion.guider) turns a MODEL and conditioning into the denoiser a SAMPLER runs
along SIGMAS; SamplerCustomAdvanced combines them with a NOISE. With BasicScheduler, CFGGuider,
RandomNoise and KSamplerSelect it gives the same latent as KSampler for the same settings.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from engine.context import Context
from engine.native import Conditioning, Input, Latent, Model, Node, Socket
from nodes.sampling.ksampler import CFG, SEED

Guider = Annotated[Any, Socket("GUIDER")]
Sampler = Annotated[Any, Socket("SAMPLER")]
Sigmas = Annotated[Any, Socket("SIGMAS")]
Noise = Annotated[Any, Socket("NOISE")]

GUIDERS = "sampling/custom_sampling/guiders"


class CFGGuider(Node):
    """Classifier-free guidance: steer towards the positive and away from the negative conditioning."""

    category = GUIDERS

    def run(
        self,
        model: Annotated[Model, Input("The denoising model, with its patches.")],
        positive: Annotated[Conditioning, Input("What the image should show.")],
        negative: Annotated[Conditioning, Input("What the image should not show.")],
        cfg: Annotated[float, CFG] = 8.0,
    ) -> Guider:
        from engine.diffusion.guider import CFGGuider as Engine

        guider = Engine(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return guider


class DualCFGGuider(Node):
    """Guidance by two conditionings against a negative: cond2 against the negative with
    cfg_cond2_negative, plus cond1 against cond2 with cfg_conds (added, or nested inside)."""

    category = GUIDERS

    def run(
        self,
        model: Annotated[Model, Input("The denoising model, with its patches.")],
        cond1: Annotated[Conditioning, Input("The main conditioning.")],
        cond2: Annotated[Conditioning, Input("The middle conditioning, between cond1 and the negative.")],
        negative: Annotated[Conditioning, Input("What the image should not show.")],
        cfg_conds: Annotated[float, CFG] = 8.0,
        cfg_cond2_negative: Annotated[float, CFG] = 8.0,
        style: Annotated[
            str, Input("Add the two guidances, or nest one in the other.", choices=("regular", "nested"))
        ] = "regular",
    ) -> Guider:
        from engine.diffusion.custom_guiders import Guider_DualCFG

        guider = Guider_DualCFG(model)
        guider.set_conds(cond1, cond2, negative)
        guider.set_cfg(cfg_conds, cfg_cond2_negative, nested=style == "nested")
        return guider


class BasicGuider(Node):
    """No guidance: the model's prediction for one conditioning (distilled models)."""

    category = GUIDERS

    def run(
        self,
        model: Annotated[Model, Input("The denoising model, with its patches.")],
        conditioning: Annotated[Conditioning, Input("What the image should show.")],
    ) -> Guider:
        from engine.diffusion.custom_guiders import Guider_Basic

        guider = Guider_Basic(model)
        guider.set_conds(conditioning)
        return guider


class PerpNegGuider(Node):
    """Perp-Neg guidance: only the part of the negative prompt perpendicular to the positive one
    pushes the image away, measured from an empty prompt."""

    category = "_for_testing"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("The denoising model, with its patches.")],
        positive: Annotated[Conditioning, Input("What the image should show.")],
        negative: Annotated[Conditioning, Input("What the image should not show.")],
        empty_conditioning: Annotated[Conditioning, Input("The encoding of an empty prompt.")],
        cfg: Annotated[float, CFG] = 8.0,
        neg_scale: Annotated[
            float, Input("Strength of the negative prompt.", min=0.0, max=100.0, step=0.01)
        ] = 1.0,
    ) -> Guider:
        from engine.diffusion.custom_guiders import Guider_PerpNeg

        guider = Guider_PerpNeg(model)
        guider.set_conds(positive, negative, empty_conditioning)
        guider.set_cfg(cfg, neg_scale)
        return guider


class SampledLatents(NamedTuple):
    output: Latent
    denoised_output: Latent


def sample_with_guider(
    ctx: Context, guider: Any, noise: Any, sampler: Any, sigmas: Any, latent: dict[str, Any], seed: int | None
) -> SampledLatents:
    """Run `guider` and return the result and the last step's denoised prediction, as LATENTs."""
    model = guider.model_patcher
    last: dict[str, Any] = {}
    total = max(int(sigmas.shape[-1]) - 1, 0)

    def on_step(step: int, denoised: Any, x: Any, total_steps: int) -> None:
        last["x0"] = denoised
        ctx.progress(step + 1, total_steps)
        ctx.preview("JPEG", model.latent.preview_jpeg(denoised))

    samples = guider.sample(
        noise,
        latent["samples"],
        sampler,
        sigmas,
        denoise_mask=latent.get("noise_mask"),
        callback=on_step,
        seed=seed,
    )
    out = dict(latent)
    out["samples"] = samples.float().cpu()
    denoised = out
    if "x0" in last and total > 0:
        denoised = dict(latent)
        denoised["samples"] = model.model.process_latent_out(last["x0"].float().cpu())
    return SampledLatents(out, denoised)


class SamplerCustom(Node):
    """Sample with a chosen SAMPLER along chosen SIGMAS, guided by CFG."""

    category = "sampling/custom_sampling"

    def run(
        self,
        ctx: Context,
        *,
        model: Annotated[Model, Input("The denoising model, with its patches.")],
        add_noise: Annotated[bool, Input("Add the seed's noise first (off when continuing).")] = True,
        noise_seed: Annotated[int, SEED] = 0,
        cfg: Annotated[float, CFG] = 8.0,
        positive: Annotated[Conditioning, Input("What the image should show.")],
        negative: Annotated[Conditioning, Input("What the image should not show.")],
        sampler: Annotated[Sampler, Input("The sampling algorithm.")],
        sigmas: Annotated[Sigmas, Input("The noise levels to step through.")],
        latent_image: Annotated[Latent, Input("The latents to denoise.")],
    ) -> SampledLatents:
        import torch

        from engine.diffusion.guider import CFGGuider as Engine
        from engine.diffusion.ksampler import fix_empty_latent_channels
        from engine.sampling import prepare_noise

        samples = fix_empty_latent_channels(model, latent_image["samples"].float())
        latent_image = {**latent_image, "samples": samples}
        if add_noise:
            noise = prepare_noise(samples, noise_seed, latent_image.get("batch_index"))
        else:
            noise = torch.zeros_like(samples)
        guider = Engine(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(cfg)
        return sample_with_guider(ctx, guider, noise, sampler, sigmas, latent_image, noise_seed)


class SamplerCustomAdvanced(Node):
    """Sample from a NOISE with a GUIDER and a SAMPLER along SIGMAS."""

    category = "sampling/custom_sampling"

    def run(
        self,
        ctx: Context,
        *,
        noise: Annotated[Noise, Input("Where the starting noise comes from.")],
        guider: Annotated[Guider, Input("The guided model.")],
        sampler: Annotated[Sampler, Input("The sampling algorithm.")],
        sigmas: Annotated[Sigmas, Input("The noise levels to step through.")],
        latent_image: Annotated[Latent, Input("The latents to denoise.")],
    ) -> SampledLatents:
        from engine.diffusion.ksampler import fix_empty_latent_channels

        samples = fix_empty_latent_channels(guider.model_patcher, latent_image["samples"])
        latent_image = {**latent_image, "samples": samples}
        drawn = noise.generate_noise(latent_image)
        return sample_with_guider(
            ctx, guider, drawn, sampler, sigmas, latent_image, getattr(noise, "seed", None)
        )
