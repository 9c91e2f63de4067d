"""Schedules: shapes, monotonicity, ComfyUI reference values, k-diffusion/diffusers formulas."""

from __future__ import annotations

import math

import pytest
import torch

from engine.sampling import (
    SCHEDULER_NAMES,
    ModelSampling,
    calculate_sigmas,
    get_sigmas_exponential,
    get_sigmas_karras,
    sigmas_for,
    slice_sigmas,
)
from engine.sampling._beta_dist import beta_cdf, beta_ppf

COMFY_SCHEDULERS = (
    "simple",
    "sgm_uniform",
    "karras",
    "exponential",
    "ddim_uniform",
    "beta",
    "normal",
    "linear_quadratic",
    "kl_optimal",
)


def test_scheduler_names_are_comfyuis() -> None:
    assert SCHEDULER_NAMES == COMFY_SCHEDULERS


@pytest.mark.parametrize("name", COMFY_SCHEDULERS)
@pytest.mark.parametrize("steps", [1, 2, 7, 20])
def test_schedule_is_monotonic_and_ends_at_zero(model_sampling: ModelSampling, name: str, steps: int) -> None:
    sigmas = calculate_sigmas(model_sampling, name, steps)
    assert sigmas.ndim == 1 and sigmas.dtype == torch.float32
    assert sigmas[-1] == 0
    assert bool((sigmas[1:] <= sigmas[:-1]).all())
    assert float(sigmas[0]) <= float(model_sampling.sigma_max) * (1 + 1e-6)
    if name not in ("beta", "ddim_uniform"):  # beta skips repeated timesteps; ddim_uniform strides
        assert len(sigmas) == steps + 1


def test_normal_matches_comfyui_sd15_values(model_sampling: ModelSampling) -> None:
    # ComfyUI "normal", 20 steps, SD1.5 (scaled_linear 0.00085..0.012).
    expected = [14.6146, 10.7468, 8.0815, 6.2049, 4.8557, 3.8654, 3.1238, 2.5572, 2.1157, 1.7648, 1.4806]
    expected += [1.2458, 1.0481, 0.8784, 0.7297, 0.5964, 0.4736, 0.3555, 0.2322, 0.0292, 0.0]
    sigmas = calculate_sigmas(model_sampling, "normal", 20)
    assert sigmas.tolist() == pytest.approx(expected, abs=1e-4)


def test_simple_strides_the_sigma_table(model_sampling: ModelSampling) -> None:
    table = model_sampling.sigmas
    sigmas = calculate_sigmas(model_sampling, "simple", 10)
    assert sigmas[0] == pytest.approx(14.6146, abs=1e-4)
    assert sigmas[:-1].tolist() == [float(table[999 - 100 * k]) for k in range(10)]


def test_sgm_uniform_drops_last_timestep(model_sampling: ModelSampling) -> None:
    sigmas = calculate_sigmas(model_sampling, "sgm_uniform", 4)
    expected = [float(model_sampling.sigma(torch.tensor(t))) for t in (999.0, 749.25, 499.5, 249.75)]
    assert sigmas.tolist() == pytest.approx([*expected, 0.0], rel=1e-6)


def test_ddim_uniform_uses_every_nth_table_entry(model_sampling: ModelSampling) -> None:
    sigmas = calculate_sigmas(model_sampling, "ddim_uniform", 4)
    table = model_sampling.sigmas
    assert sigmas.tolist() == pytest.approx([float(table[k]) for k in (751, 501, 251, 1)] + [0.0])


def test_karras_and_exponential_follow_their_formulas(model_sampling: ModelSampling) -> None:
    lo, hi, n = float(model_sampling.sigma_min), float(model_sampling.sigma_max), 6
    ramp = [k / (n - 1) for k in range(n)]
    karras = [(hi ** (1 / 7) + r * (lo ** (1 / 7) - hi ** (1 / 7))) ** 7 for r in ramp]
    exponential = [math.exp(math.log(hi) + r * (math.log(lo) - math.log(hi))) for r in ramp]
    assert calculate_sigmas(model_sampling, "karras", n).tolist() == pytest.approx([*karras, 0.0], rel=1e-5)
    assert calculate_sigmas(model_sampling, "exponential", n).tolist() == pytest.approx(
        [*exponential, 0.0], rel=1e-5
    )
    assert get_sigmas_karras(3, 0.1, 10.0, rho=1.0).tolist() == pytest.approx(
        [10.0, 5.05, 0.1, 0.0], rel=1e-5
    )
    assert get_sigmas_exponential(3, 0.1, 10.0).tolist() == pytest.approx([10.0, 1.0, 0.1, 0.0], rel=1e-6)


@pytest.mark.parametrize("kind", ["karras", "exponential"])
def test_karras_and_exponential_match_diffusers(model_sampling: ModelSampling, kind: str) -> None:
    from diffusers import EulerDiscreteScheduler

    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        use_karras_sigmas=kind == "karras",
        use_exponential_sigmas=kind == "exponential",
    )
    scheduler.set_timesteps(12)
    ours = calculate_sigmas(model_sampling, kind, 12)
    torch.testing.assert_close(ours, scheduler.sigmas.float(), rtol=1e-4, atol=1e-6)


def test_kl_optimal_is_uniform_in_arctan(model_sampling: ModelSampling) -> None:
    sigmas = calculate_sigmas(model_sampling, "kl_optimal", 5)
    angles = torch.atan(sigmas[:-1].double())
    torch.testing.assert_close(angles.diff(), angles.diff()[:1].expand(4), rtol=1e-5, atol=1e-6)


def test_beta_distribution_quantiles() -> None:
    assert beta_ppf(0.5, 0.6, 0.6) == pytest.approx(0.5, abs=1e-12)
    for q in (0.05, 0.3, 0.9):
        assert beta_ppf(q, 1.0, 3.0) == pytest.approx(1 - (1 - q) ** (1 / 3), abs=1e-10)
        assert beta_cdf(beta_ppf(q, 0.6, 0.6), 0.6, 0.6) == pytest.approx(q, abs=1e-10)


def test_denoise_keeps_the_tail_of_a_longer_schedule(model_sampling: ModelSampling) -> None:
    full = calculate_sigmas(model_sampling, "karras", 8)
    assert torch.equal(sigmas_for(model_sampling, "karras", 4, denoise=0.5), full[-5:])
    assert torch.equal(
        sigmas_for(model_sampling, "karras", 4, denoise=1.0), calculate_sigmas(model_sampling, "karras", 4)
    )
    assert len(sigmas_for(model_sampling, "karras", 4, denoise=0.0)) == 0


def test_dpm_2_drops_the_penultimate_sigma(model_sampling: ModelSampling) -> None:
    longer = calculate_sigmas(model_sampling, "normal", 6)
    sigmas = sigmas_for(model_sampling, "normal", 5, sampler_name="dpm_2")
    assert torch.equal(sigmas, torch.cat([longer[:-2], longer[-1:]]))


def test_slice_sigmas_like_ksampler_advanced() -> None:
    sigmas = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    assert slice_sigmas(sigmas, 2).tolist() == [3.0, 2.0, 1.0, 0.0]
    assert slice_sigmas(sigmas, None, 3).tolist() == [5.0, 4.0, 3.0, 2.0]
    assert slice_sigmas(sigmas, 1, 3, force_full_denoise=True).tolist() == [4.0, 3.0, 0.0]
    assert slice_sigmas(sigmas, 0, 10, force_full_denoise=True).tolist() == sigmas.tolist()
    assert len(slice_sigmas(sigmas, 5)) == 0
    assert sigmas.tolist() == [5.0, 4.0, 3.0, 2.0, 1.0, 0.0]


def test_unknown_scheduler_is_rejected(model_sampling: ModelSampling) -> None:
    with pytest.raises(ValueError, match="unknown scheduler"):
        calculate_sigmas(model_sampling, "nope", 4)
