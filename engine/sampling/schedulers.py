"""Noise schedules under ComfyUI's scheduler names, plus denoise and KSamplerAdvanced slicing.

Every schedule returns a 1-D float32 tensor of decreasing sigmas ending with 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from engine.sampling._beta_dist import beta_ppf
from engine.sampling.model_sampling import ModelSampling

Scheduler = Callable[[ModelSampling, int], Tensor]


def _append_zero(sigmas: Tensor) -> Tensor:
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def get_sigmas_karras(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> Tensor:
    """Karras et al. 2022 (arXiv:2206.00364) eq. 5: uniform in sigma^(1/rho)."""
    ramp = torch.linspace(0, 1, n)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return _append_zero((max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho)


def get_sigmas_exponential(n: int, sigma_min: float, sigma_max: float) -> Tensor:
    """Uniform in log sigma (k-diffusion's exponential schedule)."""
    return _append_zero(torch.linspace(math.log(sigma_max), math.log(sigma_min), n).exp())


def get_sigmas_polyexponential(n: int, sigma_min: float, sigma_max: float, rho: float = 1.0) -> Tensor:
    """k-diffusion's polynomial-in-log-sigma schedule: log sigma moves as ramp**rho (rho 1: exponential)."""
    ramp = torch.linspace(1, 0, n) ** rho
    log_min = math.log(sigma_min)
    return _append_zero(torch.exp(ramp * (math.log(sigma_max) - log_min) + log_min))


def get_sigmas_vp(n: int, beta_d: float = 19.9, beta_min: float = 0.1, eps_s: float = 1e-3) -> Tensor:
    """Continuous VP schedule (Song et al. 2021): sigma(t) = sqrt(exp(beta_d t^2 / 2 + beta_min t) - 1)."""
    t = torch.linspace(1, eps_s, n)
    return _append_zero(torch.sqrt(torch.special.expm1(beta_d * t**2 / 2 + beta_min * t)))


def get_sigmas_laplace(
    n: int, sigma_min: float, sigma_max: float, mu: float = 0.0, beta: float = 0.5
) -> Tensor:
    """Laplace schedule (Tiankai et al. 2024): log sigma at Laplace(mu, beta) quantiles, clamped.

    As in ComfyUI it does not append a final 0: the last sigma is about sigma_min.
    """
    x = torch.linspace(0, 1, n)
    log_sigma = mu - beta * torch.sign(0.5 - x) * torch.log(1 - 2 * torch.abs(0.5 - x) + 1e-5)
    return torch.clamp(torch.exp(log_sigma), min=sigma_min, max=sigma_max)


def sd_turbo(model_sampling: ModelSampling, steps: int, denoise: float = 1.0) -> Tensor:
    """SDXL Turbo / SD Turbo: timesteps 999, 899, ..., 99, starting ``10 - int(10 * denoise)`` in."""
    start = 10 - int(10 * denoise)
    timesteps = torch.flip(torch.arange(1, 11) * 100 - 1, (0,))[start : start + steps]
    return _append_zero(model_sampling.sigma(timesteps))


# Align Your Steps (Sabour et al. 2024): NVIDIA's published 10-step noise levels per model family.
AYS_NOISE_LEVELS: dict[str, tuple[float, ...]] = {
    "SD1": (14.6146412293, 6.4745760956, 3.8636745985, 2.6946151520, 1.8841921177, 1.3943805092,
            0.9642583904, 0.6523686016, 0.3977456272, 0.1515232662, 0.0291671582),
    "SDXL": (14.6146412293, 6.3184485287, 3.7681790315, 2.1811480769, 1.3405244945, 0.8620721141,
             0.5550693289, 0.3798540708, 0.2332364134, 0.1114188177, 0.0291671582),
    "SVD": (700.00, 54.5, 15.886, 7.977, 4.248, 1.789, 0.981, 0.403, 0.173, 0.034, 0.002),
}  # fmt: skip


def align_your_steps(model_type: str, steps: int, denoise: float = 1.0) -> Tensor:
    """AYS schedule: the family's levels, log-linearly resampled to ``steps + 1`` points, last set to 0.

    ``denoise < 1`` keeps the last ``round(steps * denoise) + 1`` sigmas; ``denoise <= 0`` is empty.
    """
    levels = np.array(AYS_NOISE_LEVELS[model_type], dtype=np.float64)
    if denoise <= 0.0:
        return torch.zeros(0)
    kept = round(steps * denoise) if denoise < 1.0 else steps
    if steps + 1 != len(levels):
        # Interpolate log sigma over an even grid, in increasing order as np.interp needs.
        grid = np.linspace(0, 1, len(levels))
        log_levels = np.log(levels[::-1])
        levels = np.exp(np.interp(np.linspace(0, 1, steps + 1), grid, log_levels))[::-1].copy()
    levels = levels[-(kept + 1) :]
    levels[-1] = 0.0
    return torch.tensor(levels, dtype=torch.float32)


def simple(model_sampling: ModelSampling, steps: int) -> Tensor:
    """ComfyUI "simple": stride the model's sigma table from the top with stride len(table) / steps."""
    table = model_sampling.sigmas
    stride = len(table) / steps
    return torch.tensor([float(table[-(1 + int(k * stride))]) for k in range(steps)] + [0.0])


def _timestep_uniform(model_sampling: ModelSampling, steps: int, sgm: bool) -> Tensor:
    start = model_sampling.timestep(model_sampling.sigma_max)
    end = model_sampling.timestep(model_sampling.sigma_min)
    append_zero = True
    if sgm:
        timesteps = torch.linspace(float(start), float(end), steps + 1)[:-1]
    else:
        if math.isclose(float(model_sampling.sigma(end)), 0, abs_tol=1e-5):
            steps += 1
            append_zero = False
        timesteps = torch.linspace(float(start), float(end), steps)
    sigmas = [float(model_sampling.sigma(t)) for t in timesteps]
    return torch.tensor([*sigmas, 0.0] if append_zero else sigmas)


def normal(model_sampling: ModelSampling, steps: int) -> Tensor:
    """ComfyUI "normal": uniform in timestep from the first to the last table entry, then sigma = 0."""
    return _timestep_uniform(model_sampling, steps, sgm=False)


def sgm_uniform(model_sampling: ModelSampling, steps: int) -> Tensor:
    """ComfyUI "sgm_uniform": ``steps + 1`` uniform timesteps with the last (smallest) one dropped."""
    return _timestep_uniform(model_sampling, steps, sgm=True)


def karras(model_sampling: ModelSampling, steps: int) -> Tensor:
    """Karras schedule (rho = 7) between the model's sigma_min and sigma_max."""
    return get_sigmas_karras(steps, float(model_sampling.sigma_min), float(model_sampling.sigma_max))


def exponential(model_sampling: ModelSampling, steps: int) -> Tensor:
    """Exponential schedule between the model's sigma_min and sigma_max."""
    return get_sigmas_exponential(steps, float(model_sampling.sigma_min), float(model_sampling.sigma_max))


def ddim_uniform(model_sampling: ModelSampling, steps: int) -> Tensor:
    """ComfyUI "ddim_uniform": every ``len(table) // steps``-th table entry from index 1 (DDIM's spacing)."""
    table = model_sampling.sigmas
    if math.isclose(float(table[1]), 0, abs_tol=1e-5):
        steps += 1
        sigmas: list[float] = []
    else:
        sigmas = [0.0]
    stride = max(len(table) // steps, 1)
    sigmas += [float(table[k]) for k in range(1, len(table), stride)]
    return torch.tensor(sigmas[::-1])


def beta(model_sampling: ModelSampling, steps: int, alpha: float = 0.6, beta: float = 0.6) -> Tensor:
    """Beta-distributed timesteps, Lee et al. 2024 "Beta Sampling is All You Need" (arXiv:2407.12173).

    Timesteps are Beta(alpha, beta) quantiles rounded to table indices; repeats are skipped.
    """
    last_index = len(model_sampling.sigmas) - 1
    sigmas: list[float] = []
    previous = -1
    for k in range(steps):
        index = round(beta_ppf(1 - k / steps, alpha, beta) * last_index)
        if index != previous:
            sigmas.append(float(model_sampling.sigmas[index]))
        previous = index
    return torch.tensor([*sigmas, 0.0])


def linear_quadratic(
    model_sampling: ModelSampling, steps: int, threshold_noise: float = 0.025, linear_steps: int | None = None
) -> Tensor:
    """Mochi's linear-then-quadratic schedule (genmoai/models), scaled by sigma_max as ComfyUI does."""
    if steps == 1:
        schedule = [1.0, 0.0]
    else:
        linear_steps = steps // 2 if linear_steps is None else linear_steps
        linear_part = [k * threshold_noise / linear_steps for k in range(linear_steps)]
        step_diff = linear_steps - threshold_noise * steps
        quadratic_steps = steps - linear_steps
        quadratic_coef = step_diff / (linear_steps * quadratic_steps**2)
        linear_coef = threshold_noise / linear_steps - 2 * step_diff / quadratic_steps**2
        const = quadratic_coef * linear_steps**2
        quadratic_part = [quadratic_coef * k**2 + linear_coef * k + const for k in range(linear_steps, steps)]
        schedule = [1.0 - v for v in [*linear_part, *quadratic_part, 1.0]]
    return torch.tensor(schedule) * float(model_sampling.sigma_max)


def kl_optimal(model_sampling: ModelSampling, steps: int) -> Tensor:
    """KL-optimal schedule from Align Your Steps (Sabour et al. 2024): uniform in arctan(sigma)."""
    sigma_min, sigma_max = float(model_sampling.sigma_min), float(model_sampling.sigma_max)
    if steps == 1:
        return torch.tensor([sigma_max, 0.0])
    w = torch.arange(steps, dtype=torch.float32) / (steps - 1)
    return _append_zero((w * math.atan(sigma_min) + (1 - w) * math.atan(sigma_max)).tan())


SCHEDULERS: dict[str, Scheduler] = {
    "simple": simple,
    "sgm_uniform": sgm_uniform,
    "karras": karras,
    "exponential": exponential,
    "ddim_uniform": ddim_uniform,
    "beta": beta,
    "normal": normal,
    "linear_quadratic": linear_quadratic,
    "kl_optimal": kl_optimal,
}
SCHEDULER_NAMES: tuple[str, ...] = tuple(SCHEDULERS)

# ComfyUI computes one extra step for these samplers and drops the penultimate sigma.
DISCARD_PENULTIMATE_SIGMA_SAMPLERS = frozenset({"dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2"})


def calculate_sigmas(model_sampling: ModelSampling, scheduler_name: str, steps: int) -> Tensor:
    """Sigmas for ``steps`` steps of the named ComfyUI scheduler."""
    try:
        scheduler = SCHEDULERS[scheduler_name]
    except KeyError:
        raise ValueError(f"unknown scheduler {scheduler_name!r}; expected one of {SCHEDULER_NAMES}") from None
    return scheduler(model_sampling, steps).float()


def sigmas_for(
    model_sampling: ModelSampling,
    scheduler: str,
    steps: int,
    denoise: float = 1.0,
    sampler_name: str | None = None,
) -> Tensor:
    """Sigmas as ComfyUI's KSampler builds them, including partial denoise.

    For ``denoise < 1`` the schedule is built for ``int(steps / denoise)`` steps and the
    last ``steps + 1`` sigmas are kept; ``denoise <= 0`` gives an empty tensor (no sampling).
    Passing ``sampler_name`` applies ComfyUI's extra-step-then-drop rule for dpm_2 / uni_pc.
    """

    def build(n: int) -> Tensor:
        if sampler_name in DISCARD_PENULTIMATE_SIGMA_SAMPLERS:
            sigmas = calculate_sigmas(model_sampling, scheduler, n + 1)
            return torch.cat([sigmas[:-2], sigmas[-1:]])
        return calculate_sigmas(model_sampling, scheduler, n)

    if denoise > 0.9999:
        return build(steps)
    if denoise <= 0.0:
        return torch.zeros(0)
    return build(int(steps / denoise))[-(steps + 1) :]


def slice_sigmas(
    sigmas: Tensor,
    start_at_step: int | None = None,
    end_at_step: int | None = None,
    force_full_denoise: bool = False,
) -> Tensor:
    """KSamplerAdvanced's step window over a full schedule.

    ``end_at_step`` truncates the schedule (and, with ``force_full_denoise``, i.e. when
    leftover noise is not returned, sets the new last sigma to 0); ``start_at_step`` then
    skips leading steps. An empty result means "nothing to do: return the latent unchanged".
    """
    if end_at_step is not None and end_at_step < len(sigmas) - 1:
        sigmas = sigmas[: end_at_step + 1].clone()
        if force_full_denoise:
            sigmas[-1] = 0
    if start_at_step is not None:
        if start_at_step >= len(sigmas) - 1:
            return sigmas[:0]
        sigmas = sigmas[start_at_step:]
    return sigmas
