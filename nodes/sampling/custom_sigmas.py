"""ComfyUI's custom-sampling schedules and sigma tools: nodes that make or reshape SIGMAS (a 1-D
float tensor, highest sigma first). The schedule math lives in engine.sampling.schedulers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, NamedTuple

from engine.native import Input, Model, Node
from nodes.sampling.custom_sampling import Sigmas

SCHEDULERS = "sampling/custom_sampling/schedulers"
SIGMA_TOOLS = "sampling/custom_sampling/sigmas"
STEPS = Input("Number of sampling steps.", min=1, max=10000)
DENOISE = Input(
    "Share of the schedule to run; below 1 keeps only its last steps.", min=0.0, max=1.0, step=0.01
)
SD_SIGMA_MAX, SD_SIGMA_MIN = 14.614642, 0.0291675  # SD1.x's table ends, ComfyUI's defaults
SIGMA_MAX = Input("Highest noise level.", min=0.0, max=5000.0, step=0.01, round=False)
SIGMA_MIN = Input("Lowest noise level above 0.", min=0.0, max=5000.0, step=0.01, round=False)
SIGMAS_IN = Input("The noise levels, highest first.")


def _scheduler_names() -> Sequence[str]:
    from engine.sampling import SCHEDULER_NAMES

    return SCHEDULER_NAMES


def _positive(node: str, **values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"{node}: input '{name}' must be above 0 for this schedule, got {value}")


class BasicScheduler(Node):
    """The sigmas of one of KSampler's schedulers for this model; denoise below 1 keeps the tail of a
    longer schedule, as KSampler does."""

    category = SCHEDULERS

    def run(
        self,
        model: Annotated[Model, Input("The model whose noise levels are spaced.")],
        scheduler: Annotated[str, Input("How noise levels are spaced.", choices=_scheduler_names)] = "normal",
        steps: Annotated[int, STEPS] = 20,
        denoise: Annotated[float, DENOISE] = 1.0,
    ) -> Sigmas:
        import torch

        from engine.sampling import calculate_sigmas
        from engine.sampling.custom import model_sampling_of

        total = steps
        if denoise < 1.0:
            if denoise <= 0.0:
                return torch.zeros(0)
            total = int(steps / denoise)
        return calculate_sigmas(model_sampling_of(model), scheduler, total).cpu()[-(steps + 1) :]


class KarrasScheduler(Node):
    """Karras et al. 2022's schedule: uniform in sigma^(1/rho) between sigma_max and sigma_min."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        sigma_max: Annotated[float, SIGMA_MAX] = SD_SIGMA_MAX,
        sigma_min: Annotated[float, SIGMA_MIN] = SD_SIGMA_MIN,
        rho: Annotated[
            float,
            Input(
                "Curvature: higher spends more steps at low noise.",
                min=0.0,
                max=100.0,
                step=0.01,
                round=False,
            ),
        ] = 7.0,
    ) -> Sigmas:
        from engine.sampling import get_sigmas_karras

        _positive("KarrasScheduler", rho=rho)
        return get_sigmas_karras(steps, sigma_min, sigma_max, rho)


class ExponentialScheduler(Node):
    """Noise levels evenly spaced in log sigma."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        sigma_max: Annotated[float, SIGMA_MAX] = SD_SIGMA_MAX,
        sigma_min: Annotated[float, SIGMA_MIN] = SD_SIGMA_MIN,
    ) -> Sigmas:
        from engine.sampling import get_sigmas_exponential

        _positive("ExponentialScheduler", sigma_max=sigma_max, sigma_min=sigma_min)
        return get_sigmas_exponential(steps, sigma_min, sigma_max)


class PolyexponentialScheduler(Node):
    """Log sigma falls as a power rho of the step ramp (rho 1 is the exponential schedule)."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        sigma_max: Annotated[float, SIGMA_MAX] = SD_SIGMA_MAX,
        sigma_min: Annotated[float, SIGMA_MIN] = SD_SIGMA_MIN,
        rho: Annotated[float, Input("Power of the ramp.", min=0.0, max=100.0, step=0.01, round=False)] = 1.0,
    ) -> Sigmas:
        from engine.sampling.schedulers import get_sigmas_polyexponential

        _positive("PolyexponentialScheduler", sigma_max=sigma_max, sigma_min=sigma_min)
        return get_sigmas_polyexponential(steps, sigma_min, sigma_max, rho)


class LaplaceScheduler(Node):
    """Log sigma at the quantiles of a Laplace(mu, beta) distribution, clamped to [sigma_min, sigma_max]
    (no final 0, as in ComfyUI)."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        sigma_max: Annotated[float, SIGMA_MAX] = SD_SIGMA_MAX,
        sigma_min: Annotated[float, SIGMA_MIN] = SD_SIGMA_MIN,
        mu: Annotated[float, Input("Centre of log sigma.", min=-10.0, max=10.0, step=0.1, round=False)] = 0.0,
        beta: Annotated[float, Input("Spread of log sigma.", min=0.0, max=10.0, step=0.1, round=False)] = 0.5,
    ) -> Sigmas:
        from engine.sampling.schedulers import get_sigmas_laplace

        return get_sigmas_laplace(steps, sigma_min, sigma_max, mu, beta)


class VPScheduler(Node):
    """The continuous variance-preserving schedule of Song et al. 2021."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        beta_d: Annotated[
            float, Input("Slope of beta(t).", min=0.0, max=5000.0, step=0.01, round=False)
        ] = 19.9,
        beta_min: Annotated[
            float, Input("beta at t = 0.", min=0.0, max=5000.0, step=0.01, round=False)
        ] = 0.1,
        eps_s: Annotated[float, Input("Smallest time.", min=0.0, max=1.0, step=0.0001, round=False)] = 0.001,
    ) -> Sigmas:
        from engine.sampling.schedulers import get_sigmas_vp

        return get_sigmas_vp(steps, beta_d, beta_min, eps_s)


class SDTurboScheduler(Node):
    """SD/SDXL Turbo's few-step schedule: timesteps 999, 899, ... of the model, denoise choosing where
    to start."""

    category = SCHEDULERS

    def run(
        self,
        model: Annotated[Model, Input("The turbo model.")],
        steps: Annotated[int, Input("Number of sampling steps.", min=1, max=10)] = 1,
        denoise: Annotated[float, DENOISE] = 1.0,
    ) -> Sigmas:
        from engine.sampling.custom import model_sampling_of
        from engine.sampling.schedulers import sd_turbo

        return sd_turbo(model_sampling_of(model), steps, denoise)


class AlignYourStepsScheduler(Node):
    """NVIDIA's Align Your Steps noise levels for the model family, resampled to the step count."""

    category = SCHEDULERS

    def run(
        self,
        model_type: Annotated[str, Input("The model family.", choices=("SD1", "SDXL", "SVD"))] = "SD1",
        steps: Annotated[int, STEPS] = 10,
        denoise: Annotated[float, DENOISE] = 1.0,
    ) -> Sigmas:
        from engine.sampling.schedulers import align_your_steps

        return align_your_steps(model_type, steps, denoise)


class BetaSamplingScheduler(Node):
    """Timesteps at Beta(alpha, beta) quantiles (Lee et al. 2024), KSampler's 'beta' with its shape free."""

    category = SCHEDULERS

    def run(
        self,
        model: Annotated[Model, Input("The model whose noise levels are spaced.")],
        steps: Annotated[int, STEPS] = 20,
        alpha: Annotated[
            float, Input("Beta distribution's alpha.", min=0.0, max=50.0, step=0.01, round=False)
        ] = 0.6,
        beta: Annotated[
            float, Input("Beta distribution's beta.", min=0.0, max=50.0, step=0.01, round=False)
        ] = 0.6,
    ) -> Sigmas:
        from engine.sampling.custom import model_sampling_of
        from engine.sampling.schedulers import beta as beta_schedule

        _positive("BetaSamplingScheduler", alpha=alpha, beta=beta)
        return beta_schedule(model_sampling_of(model), steps, alpha, beta)


class SplitOutputs(NamedTuple):
    high_sigmas: Sigmas
    low_sigmas: Sigmas


class SplitSigmas(Node):
    """Split a schedule at a step: the first part ends where the second starts (both hold that sigma)."""

    category = SIGMA_TOOLS

    def run(
        self,
        sigmas: Annotated[Sigmas, SIGMAS_IN],
        step: Annotated[int, Input("Index of the sigma both parts share.", min=0, max=10000)] = 0,
    ) -> SplitOutputs:
        return SplitOutputs(sigmas[: step + 1], sigmas[step:])


class SplitSigmasDenoise(Node):
    """Split a schedule so that the low part is the share `denoise` of its steps."""

    category = SIGMA_TOOLS

    def run(
        self,
        sigmas: Annotated[Sigmas, SIGMAS_IN],
        denoise: Annotated[float, DENOISE] = 1.0,
    ) -> SplitOutputs:
        steps = max(sigmas.shape[-1] - 1, 0)
        low_steps = round(steps * denoise)
        # As in ComfyUI, low_steps == 0 gives an empty high part (sigmas[:-0]).
        return SplitOutputs(sigmas[:-low_steps], sigmas[-(low_steps + 1) :])


class FlipSigmas(Node):
    """Reverse a schedule (lowest first), e.g. to invert sampling; a leading 0 becomes 0.0001."""

    category = SIGMA_TOOLS

    def run(self, sigmas: Annotated[Sigmas, SIGMAS_IN]) -> Sigmas:
        if len(sigmas) == 0:
            return sigmas
        flipped = sigmas.flip(0)
        if flipped[0] == 0:
            flipped[0] = 0.0001
        return flipped


class SetFirstSigma(Node):
    """Replace the first (highest) sigma of a schedule."""

    category = SIGMA_TOOLS

    def run(
        self,
        sigmas: Annotated[Sigmas, SIGMAS_IN],
        sigma: Annotated[
            float, Input("The new first sigma.", min=0.0, max=20000.0, step=0.001, round=False)
        ] = 136.0,
    ) -> Sigmas:
        if len(sigmas) == 0:
            raise ValueError("SetFirstSigma: input 'sigmas' is empty; there is no first sigma to set")
        sigmas = sigmas.clone()
        sigmas[0] = sigma
        return sigmas
