"""KSampler and KSamplerAdvanced, with ComfyUI's inputs, sampler names and scheduler names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from engine.context import Context
from engine.native import Conditioning, Input, Latent, Model, Node

SEED_MAX = 0xFFFFFFFFFFFFFFFF


def sampler_names() -> Sequence[str]:
    from engine.sampling import SAMPLER_NAMES

    return SAMPLER_NAMES


def scheduler_names() -> Sequence[str]:
    from engine.sampling import SCHEDULER_NAMES

    return SCHEDULER_NAMES


SEED = Input(
    "The seed of the noise; the same seed gives the same image.",
    min=0,
    max=SEED_MAX,
    control_after_generate=True,
)
STEPS = Input("Denoising steps.", min=1, max=10000)
CFG = Input(
    "How strongly the prompt steers the image (classifier-free guidance).",
    min=0.0,
    max=100.0,
    step=0.1,
    round=0.01,
)
SAMPLER = Input("The sampling algorithm.", choices=sampler_names)
SCHEDULER = Input("How noise levels are spaced over the steps.", choices=scheduler_names)
POSITIVE = Input("What the image should show.")
NEGATIVE = Input("What the image should not show.")


class KSampler(Node):
    """Denoise latents guided by the prompts: text-to-image from an empty latent, or image-to-image with
    denoise below 1."""

    category = "sampling"

    def run(
        self,
        ctx: Context,
        *,
        model: Annotated[Model, Input("The denoising model.")],
        seed: Annotated[int, SEED] = 0,
        steps: Annotated[int, STEPS] = 20,
        cfg: Annotated[float, CFG] = 8.0,
        sampler_name: Annotated[str, SAMPLER] = "euler",
        scheduler: Annotated[str, SCHEDULER] = "normal",
        positive: Annotated[Conditioning, POSITIVE],
        negative: Annotated[Conditioning, NEGATIVE],
        latent_image: Annotated[Latent, Input("The latents to denoise.")],
        denoise: Annotated[
            float,
            Input("How much of the latent is replaced; 1 for text-to-image.", min=0.0, max=1.0, step=0.01),
        ] = 1.0,
    ) -> Latent:
        from engine.diffusion.ksampler import SamplerSettings, run_ksampler

        settings = SamplerSettings(seed, steps, cfg, sampler_name, scheduler, denoise)
        return run_ksampler(ctx, model, positive, negative, latent_image, settings)


ON_OFF = ("enable", "disable")


class KSamplerAdvanced(Node):
    """KSampler with control over the step window: run only steps start_at_step..end_at_step of the
    schedule, with or without adding noise and with or without returning the leftover noise — how an
    SDXL base model hands over to the refiner."""

    display_name = "KSampler (Advanced)"
    category = "sampling"

    def run(
        self,
        ctx: Context,
        *,
        model: Annotated[Model, Input("The denoising model.")],
        add_noise: Annotated[
            str, Input("Add the seed's noise first (disable when continuing).", choices=ON_OFF)
        ] = "enable",
        noise_seed: Annotated[int, SEED] = 0,
        steps: Annotated[int, STEPS] = 20,
        cfg: Annotated[float, CFG] = 8.0,
        sampler_name: Annotated[str, SAMPLER] = "euler",
        scheduler: Annotated[str, SCHEDULER] = "normal",
        positive: Annotated[Conditioning, POSITIVE],
        negative: Annotated[Conditioning, NEGATIVE],
        latent_image: Annotated[Latent, Input("The latents to denoise.")],
        start_at_step: Annotated[int, Input("First step of the schedule to run.", min=0, max=10000)] = 0,
        end_at_step: Annotated[int, Input("Step of the schedule to stop at.", min=0, max=10000)] = 10000,
        return_with_leftover_noise: Annotated[
            str,
            Input("Keep the remaining noise in the result (to continue elsewhere).", choices=ON_OFF[::-1]),
        ] = "disable",
    ) -> Latent:
        from engine.diffusion.ksampler import SamplerSettings, run_ksampler

        settings = SamplerSettings(
            noise_seed,
            steps,
            cfg,
            sampler_name,
            scheduler,
            add_noise=add_noise == "enable",
            start_step=start_at_step,
            last_step=end_at_step,
            force_full_denoise=return_with_leftover_noise != "enable",
        )
        return run_ksampler(ctx, model, positive, negative, latent_image, settings)
