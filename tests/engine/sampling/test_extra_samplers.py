"""The samplers added for ComfyUI 0.3.64's full KSampler list (CFG++ DPM++ 2S/2M and RES multistep,
DEIS, gradient estimation, SEEDS-2/3) and ER-SDE on flow models, on small tensors against the math."""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import pytest
import torch
from torch import Tensor

from engine.sampling import SAMPLER_NAMES, ModelSampling, calculate_sigmas, get_sampler, sample
from engine.sampling._common import ancestral_step
from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow
from engine.sampling.samplers_cfg_pp_multistep import sample_dpmpp_2m_cfg_pp, sample_gradient_estimation
from engine.sampling.samplers_deis import deis_coefficients, sample_deis, sigma_to_vp_time, vp_betas
from engine.sampling.samplers_er_sde import sample_er_sde
from engine.sampling.samplers_seeds import sample_seeds_2, sample_seeds_3

from .conftest import gaussian_denoiser
from .test_continuous_cfg_pp_sa_solver import guided_model

COMFY_0_3_64_SAMPLERS = [
    "euler",
    "euler_cfg_pp",
    "euler_ancestral",
    "euler_ancestral_cfg_pp",
    "heun",
    "heunpp2",
    "dpm_2",
    "dpm_2_ancestral",
    "lms",
    "dpm_fast",
    "dpm_adaptive",
    "dpmpp_2s_ancestral",
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_sde",
    "dpmpp_sde_gpu",
    "dpmpp_2m",
    "dpmpp_2m_cfg_pp",
    "dpmpp_2m_sde",
    "dpmpp_2m_sde_gpu",
    "dpmpp_2m_sde_heun",
    "dpmpp_2m_sde_heun_gpu",
    "dpmpp_3m_sde",
    "dpmpp_3m_sde_gpu",
    "ddpm",
    "lcm",
    "ipndm",
    "ipndm_v",
    "deis",
    "res_multistep",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "er_sde",
    "seeds_2",
    "seeds_3",
    "sa_solver",
    "sa_solver_pece",
    "ddim",
    "uni_pc",
    "uni_pc_bh2",
]
NEW = [
    "dpmpp_2s_ancestral_cfg_pp",
    "dpmpp_2m_cfg_pp",
    "deis",
    "res_multistep_cfg_pp",
    "res_multistep_ancestral_cfg_pp",
    "gradient_estimation",
    "gradient_estimation_cfg_pp",
    "seeds_2",
    "seeds_3",
]
# CFG++ forms and the plain samplers they equal when the uncond prediction is the guided one. Not
# dpmpp_2s_ancestral_cfg_pp: like ComfyUI's, its full step mixes the start's prediction with the
# midpoint's uncond, so it differs from DPM++(2S) even unguided.
CFG_PP_TWINS = {
    "dpmpp_2m_cfg_pp": "dpmpp_2m",
    "res_multistep_cfg_pp": "res_multistep",
    "res_multistep_ancestral_cfg_pp": "res_multistep_ancestral",
    "gradient_estimation_cfg_pp": "gradient_estimation",
}


def test_sampler_names_are_comfyui_0_3_64s_in_order() -> None:
    assert list(SAMPLER_NAMES) == COMFY_0_3_64_SAMPLERS


def constant(point: float) -> Any:
    return lambda x, sigma, **_: torch.full_like(x, point)


def test_deis_coefficients_integrate_dsigma_dt() -> None:
    # The integrand is dsigma/dt of the VP time map, so the Lagrange weights sum to sigma_next - sigma
    # and integrate t exactly: sum_j C_j t_{i-j} = int t dsigma.
    sigmas = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.3])
    times = sigma_to_vp_time(sigmas)
    beta_0, beta_1 = vp_betas()
    for i, order in ((1, 2), (2, 3), (3, 4)):
        c = deis_coefficients(times, i, order)
        assert math.isclose(sum(float(v) for v in c), float(sigmas[i + 1] - sigmas[i]), rel_tol=2e-3)
        fine = torch.linspace(float(times[i]), float(times[i + 1]), 200_001, dtype=torch.float64)
        sigma_fine = torch.sqrt(torch.exp(beta_0 * fine + 0.5 * (beta_1 - beta_0) * fine**2) - 1)
        t_dsigma = torch.trapezoid(fine, sigma_fine)
        moment = sum(float(v) * float(times[i - j]) for j, v in enumerate(c))
        assert math.isclose(moment, float(t_dsigma), rel_tol=3e-3)


def test_vp_time_map_hits_edms_range() -> None:
    # t(80) = 1 and t(0.002) = 1e-3 by construction (float32, as ComfyUI computes it, blurs the small
    # end: log(1 + 4e-6) keeps two digits). beta_0 < 0, so sigma 0 maps to -2 beta_0 / beta_d, not 0;
    # DEIS never integrates there (its last step is Euler).
    beta_0, beta_1 = vp_betas()
    assert beta_0 < 0
    times = sigma_to_vp_time(torch.tensor([80.0, 0.002, 0.0]))
    assert float(times[0]) == pytest.approx(1.0, rel=1e-5)
    assert float(times[1]) == pytest.approx(1e-3, rel=0.05)
    assert float(times[2]) == pytest.approx(-2 * beta_0 / (beta_1 - beta_0), rel=1e-4)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_deis_follows_a_constant_denoisers_exact_path(order: int) -> None:
    # With a constant prediction eps = (x - c) / sigma stays constant and x_i = c + sigma_i eps exactly.
    sigmas = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.3, 0.0])
    x = torch.tensor([[[[3.0, -2.0]]]]) * sigmas[0]
    seen: list[Tensor] = []
    out = sample_deis(constant(0.5), x, sigmas, max_order=order, callback=lambda s: seen.append(s["x"]))
    for i, got in enumerate(seen):
        torch.testing.assert_close(got, 0.5 + (x - 0.5) * sigmas[i] / sigmas[0], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(out, torch.full_like(x, 0.5))


def test_deis_rejects_a_bad_order() -> None:
    with pytest.raises(ValueError, match="max_order"):
        sample_deis(constant(0.0), torch.zeros(1, 1, 1, 1), torch.tensor([1.0, 0.0]), max_order=5)


@pytest.mark.parametrize("name", sorted(CFG_PP_TWINS))
def test_cfg_pp_samplers_equal_their_plain_form_without_guidance(name: str) -> None:
    sigmas = torch.tensor([14.6, 6.0, 2.5, 1.0, 0.3, 0.0])
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(4)) * sigmas[0]
    noise = torch.randn(5, *x.shape, generator=torch.Generator().manual_seed(5))
    outs = []
    for sampler in (name, CFG_PP_TWINS[name]):
        draws = iter(noise)
        fn = get_sampler(sampler)
        outs.append(fn(gaussian_denoiser(0.3, 0.5), x, sigmas, noise_sampler=lambda s, t, d=draws: next(d)))
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


def test_dpmpp_2m_cfg_pp_steps_by_hand() -> None:
    # Guided prediction 2, uncond 0.5 everywhere; sigmas 4 -> 2 -> 1 -> 0.
    model = guided_model(cond=1.0, uncond=0.5, cfg=3.0)
    x, sigmas = torch.full((1, 1, 1, 1), 8.0), torch.tensor([4.0, 2.0, 1.0, 0.0])
    got = sample_dpmpp_2m_cfg_pp(model, x, sigmas, extra_args={"model_options": {}})
    # step 1 (first order): x = 2 - 0.5 * 0.5 + 0.5 * 8 = 5.75
    # step 2: h = h_last = log 2, r = 1: x = 2 - 0.5 * 0.5 - expm1(-log 2) / 2 * (2 - 0.5) + 0.5 * 5.75
    #         = 2 - 0.25 + 0.375 + 2.875 = 5
    step_2 = 5.0
    seen: list[float] = []
    sample_dpmpp_2m_cfg_pp(
        model, x, sigmas, extra_args={"model_options": {}}, callback=lambda s: seen.append(float(s["x"]))
    )
    assert seen[:3] == pytest.approx([8.0, 5.75, step_2])
    assert float(got) == pytest.approx(2.0)  # the last step returns the guided prediction


def test_gradient_estimation_steps_by_hand() -> None:
    # Denoiser 0.5 * x: d = (x - 0.5x) / sigma = x / (2 sigma).
    model = lambda x, sigma, **_: 0.5 * x  # noqa: E731
    x, sigmas = torch.full((1, 1, 1, 1), 4.0), torch.tensor([4.0, 2.0, 1.0])
    got = sample_gradient_estimation(model, x, sigmas, ge_gamma=2.0)
    x1 = 4.0 + (4.0 / 8) * -2.0  # Euler: 3
    d0, d1 = 4.0 / 8, x1 / 4
    x2 = x1 + d1 * -1.0 + (2.0 - 1) * (d1 - d0) * -1.0
    assert float(got) == pytest.approx(x2)


@pytest.mark.parametrize("seeds", [sample_seeds_2, sample_seeds_3])
@pytest.mark.parametrize("flow", [False, True])
def test_seeds_ode_is_exact_for_a_constant_prediction(seeds: Any, flow: bool) -> None:
    # eta 0: the exponential integrator in data prediction is exact when the prediction is constant.
    ms = ModelSamplingDiscreteFlow(shift=3.0) if flow else ModelSampling()
    sigmas = torch.tensor([0.9, 0.6, 0.3, 0.1]) if flow else torch.tensor([10.0, 4.0, 1.0, 0.2])
    eps = torch.tensor([[[[1.0, -2.0, 0.5]]]])
    alpha = (lambda s: 1 - s) if flow else (lambda s: 1.0)
    x = alpha(sigmas[0]) * 0.7 + sigmas[0] * eps
    out = seeds(constant(0.7), x, sigmas, eta=0.0, model_sampling=ms)
    torch.testing.assert_close(out, alpha(sigmas[-1]) * 0.7 + sigmas[-1] * eps, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seeds", [sample_seeds_2, sample_seeds_3])
def test_seeds_sde_noise_keeps_the_marginal(seeds: Any) -> None:
    # eta 1 with a constant prediction: x - c = sigma * (unit Gaussian) at every sigma, because each
    # stage's noise continues one path (decayed old noise plus fresh noise of the missing variance).
    sigmas = torch.tensor([10.0, 4.0, 1.0, 0.2])
    generator = torch.Generator().manual_seed(0)
    x = 0.7 + sigmas[0] * torch.randn(1, 1, 400, 500, generator=generator)
    noise = lambda s, t: torch.randn(x.shape, generator=generator)  # noqa: E731
    out = seeds(constant(0.7), x, sigmas, eta=1.0, noise_sampler=noise, model_sampling=ModelSampling())
    residual = (out - 0.7) / sigmas[-1]
    assert abs(float(residual.mean())) < 0.01
    assert float(residual.std()) == pytest.approx(1.0, abs=0.01)
    # and the noise is new: the result is not the ODE's.
    ode = seeds(constant(0.7), x, sigmas, eta=0.0, model_sampling=ModelSampling())
    assert float((out - ode).abs().mean()) > 0.05


def test_er_sde_ode_on_a_flow_model_is_exact_for_a_constant_prediction() -> None:
    ms = ModelSamplingDiscreteFlow(shift=3.0)
    sigmas = torch.tensor([1.0, 0.8, 0.5, 0.2, 0.05])
    eps = torch.tensor([[[[1.0, -2.0, 0.5]]]])
    x = eps.clone()  # sigma 1: pure noise; the first sigma moves just inside the schedule
    first = float(ms.percent_to_sigma(1e-4))
    out = sample_er_sde(constant(0.7), x, sigmas, eta=0.0, s_noise=0.0, model_sampling=ms)
    # The solver takes x as the state at the offset sigma `first`: its noise part there is
    # (x - (1 - first) * 0.7) / first, which the exact flow path carries to the last sigma.
    expected = (1 - sigmas[-1]) * 0.7 + sigmas[-1] * (x - (1 - first) * 0.7) / first
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-4)


def test_er_sde_without_model_sampling_is_unchanged_for_sd() -> None:
    sigmas = torch.tensor([10.0, 4.0, 1.0, 0.2, 0.0])
    x = torch.randn(1, 2, 3, 3, generator=torch.Generator().manual_seed(2)) * 10
    noise = torch.randn(4, *x.shape, generator=torch.Generator().manual_seed(3))
    runs = []
    for ms in (None, ModelSampling()):
        draws = iter(noise)
        runs.append(
            sample_er_sde(
                gaussian_denoiser(0.2, 0.4),
                x,
                sigmas,
                model_sampling=ms,
                noise_sampler=lambda s, t, d=draws: next(d),
            )
        )
    torch.testing.assert_close(runs[0], runs[1])


@pytest.mark.parametrize("name", NEW)
def test_new_samplers_are_deterministic_for_a_seed(name: str) -> None:
    ms = ModelSampling()
    sigmas = calculate_sigmas(ms, "karras", 5)
    latent = torch.zeros(1, 4, 4, 4)
    noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
    run = partial(sample, gaussian_denoiser(0.1, 0.5), noise, latent, sigmas, name, model_sampling=ms)
    first, again, other = run(seed=1), run(seed=1), run(seed=2)
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    stochastic = name in {"dpmpp_2s_ancestral_cfg_pp", "res_multistep_ancestral_cfg_pp", "seeds_2", "seeds_3"}
    assert bool((first != other).any()) == stochastic


def test_ancestral_step_from_an_infinite_sigma_is_pure_noise() -> None:
    # CFG++ on a flow model at sigma 1 asks for a step from sigma / alpha = inf; ComfyUI's min() keeps
    # sigma_to as the noise and steps down to 0, where a NaN would poison the image.
    down, up = ancestral_step(torch.tensor(float("inf")), torch.tensor(0.8))
    assert float(up) == pytest.approx(0.8) and float(down) == 0.0


def test_euler_ancestral_cfg_pp_on_a_flow_schedule_from_sigma_1_is_finite() -> None:
    ms = ModelSamplingDiscreteFlow(shift=3.0)
    sigmas = torch.tensor([1.0, 0.7, 0.3, 0.0])
    x = torch.randn(1, 2, 4, 4, generator=torch.Generator().manual_seed(1))
    out = get_sampler("euler_ancestral_cfg_pp", ms)(
        guided_model(1.0, 0.5, 3.0), x, sigmas, extra_args={"model_options": {}}
    )
    assert torch.isfinite(out).all()
