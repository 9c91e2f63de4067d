"""UniPC (uni_pc, uni_pc_bh2): registration, known answers, convergence order and diffusers parity."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from engine.sampling import (
    SAMPLER_NAMES,
    SCHEDULER_NAMES,
    ModelSampling,
    calculate_sigmas,
    denoiser,
    get_sampler,
    sample,
    sigmas_for,
)
from engine.sampling.samplers_unipc import sample_uni_pc, unipc_coefficients

from .conftest import gaussian_denoiser, toy_eps

NAMES = ["uni_pc", "uni_pc_bh2"]
VARIANT = {"uni_pc": "bh1", "uni_pc_bh2": "bh2"}
SD_BETAS = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear"}


def test_both_names_are_registered() -> None:
    assert set(NAMES) <= set(SAMPLER_NAMES)
    for name in NAMES:
        assert callable(get_sampler(name))


@pytest.mark.parametrize("name", NAMES)
def test_runs_finite_on_every_scheduler_and_step_count(model_sampling: ModelSampling, name: str) -> None:
    latent = torch.zeros(1, 2, 2, 2)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    model = gaussian_denoiser(0.5, 0.2)
    for scheduler in SCHEDULER_NAMES:
        for steps in (1, 2, 3, 5):
            sigmas = sigmas_for(model_sampling, scheduler, steps, sampler_name=name)
            out = sample(model, noise, latent, sigmas, name, model_sampling=model_sampling, seed=1)
            assert torch.isfinite(out).all(), (scheduler, steps)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("end_at_zero", [True, False])
def test_exact_for_a_single_data_point(model_sampling: ModelSampling, name: str, end_at_zero: bool) -> None:
    """A constant x0 prediction makes every higher-order difference vanish: the ODE solution is exact."""
    point = torch.tensor([0.25, -0.5, 1.0]).reshape(1, 3, 1, 1).expand(2, 3, 2, 2)
    sigmas = calculate_sigmas(model_sampling, "karras", 6)
    if not end_at_zero:
        sigmas = sigmas[:-1]
    x = torch.randn(point.shape, generator=torch.Generator().manual_seed(3)) * sigmas[0]
    out = get_sampler(name)(lambda x, sigma, **kw: point.clone(), x, sigmas)
    expected = point + sigmas[-1] / sigmas[0] * (x - point)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def _gaussian_error(model_sampling: ModelSampling, name: str, steps: int, end_at_zero: bool) -> float:
    """Relative error against the exact probability-flow ODE solution for data N(0.5, 0.2^2)."""
    mean, std = 0.5, 0.2
    if end_at_zero:
        sigmas = calculate_sigmas(model_sampling, "karras", steps)
    else:  # stop at sigma_min: no first-order step to 0 hides the solver's order
        sigmas = calculate_sigmas(model_sampling, "karras", steps + 1)[:-1]
    x = torch.randn(256, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    out = get_sampler(name)(gaussian_denoiser(mean, std), x, sigmas)
    scale = ((std**2 + sigmas[-1] ** 2) / (std**2 + sigmas[0] ** 2)) ** 0.5
    exact = mean + scale * (x - mean)
    return float((out - exact).abs().max() / (exact - mean).abs().max())


@pytest.mark.parametrize("name", NAMES)
def test_converges_to_the_ode_solution_as_steps_double(model_sampling: ModelSampling, name: str) -> None:
    coarse = _gaussian_error(model_sampling, name, 10, end_at_zero=True)
    fine = _gaussian_error(model_sampling, name, 20, end_at_zero=True)
    assert fine < 0.11
    assert fine < 0.6 * coarse
    # without the final first-order step the error falls faster than second order (observed 5.5-8x)
    coarse = _gaussian_error(model_sampling, name, 10, end_at_zero=False)
    fine = _gaussian_error(model_sampling, name, 20, end_at_zero=False)
    assert fine < 0.25 * coarse


@pytest.mark.parametrize("name", NAMES)
def test_one_model_call_and_one_callback_per_step(model_sampling: ModelSampling, name: str) -> None:
    sigmas = calculate_sigmas(model_sampling, "karras", 5)
    x = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    calls: list[float] = []
    reports: list[dict[str, Any]] = []
    model = gaussian_denoiser(0.0, 1.0)

    def counted(x: Tensor, sigma: Tensor, **kw: Any) -> Tensor:
        calls.append(float(sigma[0]))
        return model(x, sigma)

    get_sampler(name)(counted, x, sigmas, callback=reports.append)
    assert calls == pytest.approx(sigmas[:-1].tolist())
    assert [r["i"] for r in reports] == list(range(5))
    assert all(
        r["total"] == 5 and set(r) == {"i", "x", "sigma", "sigma_hat", "denoised", "total"} for r in reports
    )

    def interrupt(info: dict[str, Any]) -> None:
        if info["i"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        get_sampler(name)(model, x, sigmas, callback=interrupt)


def test_options_are_checked(model_sampling: ModelSampling) -> None:
    sigmas = calculate_sigmas(model_sampling, "karras", 3)
    x = torch.zeros(1, 1, 1, 1)
    model = gaussian_denoiser(0.0, 1.0)
    with pytest.raises(TypeError):
        get_sampler("uni_pc")(model, x, sigmas, eta=0.5)
    with pytest.raises(TypeError):
        get_sampler("uni_pc_bh2")(model, x, sigmas, variant="bh1")
    with pytest.raises(ValueError, match="variant"):
        sample_uni_pc(model, x, sigmas, variant="vary_coeff")


def test_coefficients_solve_the_order_conditions() -> None:
    """Weights solve sum_k rho_k r_k^(j-1) = b_j (paper eq. 9); for bh1 and h -> 0, b_j -> 1 / (j + 1).

    With equal steps (r = -1, -2) that gives Adams-type weights; order 1 uses the fixed 1/2.
    """
    for variant in ("bh1", "bh2"):
        assert unipc_coefficients(0.3, [1.0], variant)[1:] == ([], [0.5])
        assert unipc_coefficients(0.3, [-1.0, 1.0], variant)[1] == [0.5]
    _, _, rhos_c = unipc_coefficients(1e-2, [-1.0, 1.0], "bh1")
    assert rhos_c == pytest.approx([1 / 12, 5 / 12], rel=1e-2)
    _, rhos_p, rhos_c = unipc_coefficients(1e-2, [-1.0, -2.0, 1.0], "bh1")
    assert rhos_p == pytest.approx([4 / 3, -5 / 6], rel=1e-2)
    powers = torch.tensor([[1.0, 1.0, 1.0], [-1.0, -2.0, 1.0], [1.0, 4.0, 1.0]], dtype=torch.float64)
    targets = (powers @ torch.tensor(rhos_c, dtype=torch.float64)).tolist()
    assert targets == pytest.approx([1 / 2, 1 / 3, 1 / 4], rel=1e-2)
    assert unipc_coefficients(0.3, [1.0], "bh1")[0] == pytest.approx(-0.3)
    assert unipc_coefficients(0.3, [1.0], "bh2")[0] == pytest.approx(torch.tensor(-0.3).expm1().item())


def test_final_zero_differs_from_comfyuis_sigma_0001_by_that_much_noise(
    model_sampling: ModelSampling,
) -> None:
    """ComfyUI replaces a final sigma of 0 by 0.001; we go to 0 (the last denoised).

    Only the last, first-order step differs: ComfyUI's leaves 0.001 * eps of the noise.
    """
    sigmas = calculate_sigmas(model_sampling, "karras", 6)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    model = denoiser(toy_eps, model_sampling)
    for name in NAMES:
        reports: list[dict[str, Any]] = []
        to_zero = get_sampler(name)(model, x, sigmas, callback=reports.append)
        comfy_like = get_sampler(name)(model, x, torch.cat([sigmas[:-1], torch.tensor([0.001])]))
        last = reports[-1]
        torch.testing.assert_close(to_zero, last["denoised"])
        gap = 0.001 / last["sigma"] * (last["x"] - last["denoised"])
        torch.testing.assert_close(comfy_like - to_zero, gap, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_repeated_sigma_is_a_no_op(model_sampling: ModelSampling, name: str) -> None:
    sigmas = calculate_sigmas(model_sampling, "karras", 6)
    repeated = torch.cat([sigmas[:3], sigmas[2:]])
    x = torch.randn(1, 2, 2, 2, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    model = denoiser(toy_eps, model_sampling)
    out = get_sampler(name)(model, x, repeated)
    torch.testing.assert_close(out, get_sampler(name)(model, x, sigmas), rtol=1e-5, atol=1e-5)


# --- parity with diffusers' UniPCMultistepScheduler (same eps network, same sigmas) ---------------


def _diffusers_unipc(variant: str, final: str, karras: bool, steps: int = 8):
    from diffusers import UniPCMultistepScheduler

    scheduler = UniPCMultistepScheduler(
        **SD_BETAS,
        solver_order=3,
        solver_type=variant,
        predict_x0=True,
        lower_order_final=True,
        final_sigmas_type=final,
        use_karras_sigmas=karras,
    )
    scheduler.set_timesteps(steps)
    return scheduler


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("karras", [False, True])
def test_matches_diffusers_unipc_multistep(model_sampling: ModelSampling, name: str, karras: bool) -> None:
    """Order 3, data prediction, corrector on; diffusers' final sigma is the table's sigma_min.

    (Its bh1 update is not finite at a final sigma of 0, so sigma_min is the common ground.)
    """
    scheduler = _diffusers_unipc(VARIANT[name], "sigma_min", karras)
    sigmas = scheduler.sigmas.float()
    assert sigmas[-1] > 0
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(0)) * sigmas[0]
    x_vp = x / (1 + sigmas[0] ** 2) ** 0.5
    for t in scheduler.timesteps:
        x_vp = scheduler.step(toy_eps(x_vp, t), t, x_vp).prev_sample
    theirs = x_vp * (1 + sigmas[-1] ** 2) ** 0.5  # back from VP to sigma space
    ours = get_sampler(name)(denoiser(toy_eps, model_sampling), x, sigmas)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-3)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bh2_matches_diffusers_down_to_sigma_zero(model_sampling: ModelSampling) -> None:
    scheduler = _diffusers_unipc("bh2", "zero", karras=True)
    sigmas = scheduler.sigmas.float()
    assert sigmas[-1] == 0
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    x_vp = x / (1 + sigmas[0] ** 2) ** 0.5
    for t in scheduler.timesteps:
        x_vp = scheduler.step(toy_eps(x_vp, t), t, x_vp).prev_sample
    ours = get_sampler("uni_pc_bh2")(denoiser(toy_eps, model_sampling), x, sigmas)
    torch.testing.assert_close(ours, x_vp, rtol=1e-4, atol=1e-3)
