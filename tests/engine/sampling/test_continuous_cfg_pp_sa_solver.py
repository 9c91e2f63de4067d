"""Continuous EDM/V samplings, the CFG++ step and SA-Solver's coefficients against values worked out by
hand from ComfyUI's model_sampling.py, k_diffusion/sampling.py and k_diffusion/sa_solver.py."""

from __future__ import annotations

import math
from typing import Any

import torch

from engine.sampling import calculate_sigmas
from engine.sampling.model_sampling_continuous import (
    ContinuousEDMSampling,
    ContinuousVSampling,
    CosmosRFlowSampling,
)
from engine.sampling.samplers_cfg_pp import sample_euler_ancestral_cfg_pp, sample_euler_cfg_pp
from engine.sampling.samplers_sa_solver import (
    adams_coefficients,
    exponential_coefficients,
    sample_sa_solver,
    tau_interval,
)


def test_edm_sigma_table_and_network_time() -> None:
    edm = ContinuousEDMSampling("edm", sigma_min=0.002, sigma_max=120.0, sigma_data=0.5)
    assert len(edm.sigmas) == 1000
    assert math.isclose(float(edm.sigma_min), 0.002, rel_tol=1e-5)
    assert math.isclose(float(edm.sigma_max), 120.0, rel_tol=1e-5)
    steps = edm.log_sigmas.diff()
    assert torch.allclose(steps, torch.full_like(steps, math.log(120 / 0.002) / 999), rtol=1e-3)
    assert math.isclose(float(edm.timestep(torch.tensor(math.e))), 0.25, rel_tol=1e-6)
    assert math.isclose(float(edm.sigma(torch.tensor(0.25))), math.e, rel_tol=1e-6)
    # Half way through the schedule in log space: the geometric mean of the ends.
    assert math.isclose(edm.percent_to_sigma(0.5), math.sqrt(0.002 * 120), rel_tol=1e-4)
    assert edm.percent_to_sigma(0.0) == 999999999.9 and edm.percent_to_sigma(1.0) == 0.0
    karras = calculate_sigmas(edm, "karras", 4)
    assert math.isclose(float(karras[0]), 120.0, rel_tol=1e-4) and float(karras[-1]) == 0.0


def test_output_parameterisations() -> None:
    x, out, sigma = torch.ones(1, 1, 1, 1), torch.ones(1, 1, 1, 1), torch.tensor([1.0])
    # sigma_data 0.5: skip = 0.25 / 1.25 = 0.2, scaled output = 1 * 0.5 / sqrt(1.25)
    scaled = 0.5 / math.sqrt(1.25)
    edm = ContinuousEDMSampling("edm", sigma_data=0.5)
    v = ContinuousEDMSampling("v_prediction", sigma_data=0.5)
    eps = ContinuousEDMSampling("eps")
    assert math.isclose(float(edm.calculate_denoised(sigma, out, x)), 0.2 + scaled, rel_tol=1e-6)
    assert math.isclose(float(v.calculate_denoised(sigma, out, x)), 0.2 - scaled, rel_tol=1e-6)
    assert float(eps.calculate_denoised(sigma, out * 0.5, x)) == 0.5
    assert math.isclose(float(edm.calculate_input(sigma, x)), 1 / math.sqrt(1.25), rel_tol=1e-6)
    cv = ContinuousVSampling()
    assert math.isclose(float(cv.timestep(torch.tensor(1.0))), 0.5, rel_tol=1e-6)
    assert math.isclose(float(cv.sigma(torch.tensor(0.5))), 1.0, rel_tol=1e-6)
    cosmos = CosmosRFlowSampling()
    # sigma 1 is t = 1/2: input x (1 - t), denoised x (1 - t) - out t.
    assert float(cosmos.calculate_input(sigma, x)) == 0.5
    assert float(cosmos.calculate_denoised(sigma, out, x)) == 0.0
    assert math.isclose(float(cosmos.sigma(torch.tensor(0.5))), 1.0, rel_tol=1e-6)


def guided_model(cond: float, uncond: float, cfg: float) -> Any:
    """A denoiser that runs model_options' post-cfg functions, as the guider does."""

    def model(
        x: torch.Tensor, sigma: torch.Tensor, model_options: dict[str, Any] | None = None, **_: Any
    ) -> Any:
        c, u = torch.full_like(x, cond), torch.full_like(x, uncond)
        denoised = u + (c - u) * cfg
        for fn in (model_options or {}).get("sampler_post_cfg_function", []):
            denoised = fn({"denoised": denoised, "cond_denoised": c, "uncond_denoised": u})
        return denoised

    return model


def test_cfg_pp_step_by_hand() -> None:
    x, sigmas = torch.full((1, 1, 1, 1), 4.0), torch.tensor([2.0, 1.0])
    model = guided_model(cond=1.0, uncond=0.5, cfg=3.0)  # guided: 0.5 + 0.5 * 3 = 2
    options = {"model_options": {"transformer_options": {}}}
    got = sample_euler_cfg_pp(model, x, sigmas, extra_args=options)
    # denoised + sigma_next * (x - uncond) / sigma = 2 + 1 * (4 - 0.5) / 2
    assert math.isclose(float(got), 3.75, rel_tol=1e-6)
    assert options == {"model_options": {"transformer_options": {}}}  # the caller's options untouched
    noise = lambda s, t: torch.ones(1, 1, 1, 1)  # noqa: E731
    got = sample_euler_ancestral_cfg_pp(model, x, sigmas, extra_args=options, noise_sampler=noise, eta=1.0)
    # sigma_up = min(1, sqrt(1 * (4 - 1) / 4)), sigma_down = sqrt(1 - 3/4) = 1/2
    expected = 2 + 0.5 * (4 - 0.5) / 2 + math.sqrt(0.75)
    assert math.isclose(float(got), expected, rel_tol=1e-6)


def test_exponential_coefficients_are_the_integrals() -> None:
    s, t, tau = torch.tensor(-1.0, dtype=torch.float64), torch.tensor(0.5, dtype=torch.float64), 0.7
    m = 1 + tau**2
    got = exponential_coefficients(s, t, 3, tau)
    grid = torch.linspace(float(s), float(t), 200001, dtype=torch.float64)
    for p in range(3):
        integrand = torch.exp(m * grid) * grid**p
        expected = m * torch.trapezoid(integrand, grid) / math.exp(m * float(t))
        assert math.isclose(float(got[p]), float(expected), rel_tol=1e-6)


def test_first_order_coefficient_is_the_ddim_weight() -> None:
    lam_s, lam_t = torch.tensor(0.0), torch.tensor(0.5)
    sigma_next = torch.exp(-lam_t)  # eps models: lambda = -log sigma, alpha = 1
    (b,) = adams_coefficients(sigma_next, lam_s.view(1), lam_s, lam_t, tau_t=0.0)
    assert math.isclose(float(b), 1 - math.exp(-0.5), rel_tol=1e-5)
    # Coefficients of an order-k step integrate the constant 1 exactly: they sum to the order-1 weight.
    lambdas = torch.tensor([-0.6, -0.3, 0.0])
    for tau in (0.0, 1.0):
        full = adams_coefficients(sigma_next, lambdas, lam_s, lam_t, tau)
        (single,) = adams_coefficients(sigma_next, lambdas[-1:], lam_s, lam_t, tau)
        assert math.isclose(float(full.sum()), float(single), rel_tol=1e-4)
    simple = adams_coefficients(sigma_next, lambdas[-2:], lam_s, lam_t, 0.0, simple_order_2=True)
    assert math.isclose(float(simple.sum()), 1 - math.exp(-0.5), rel_tol=1e-5)


def test_tau_interval() -> None:
    tau = tau_interval(10.0, 1.0, eta=0.8)
    assert tau(torch.tensor(5.0)) == 0.8 and tau(11.0) == 0.0 and tau(0.5) == 0.0
    assert tau_interval(10.0, 1.0, eta=0.0)(5.0) == 0.0


def test_sa_solver_is_exact_for_a_constant_prediction() -> None:
    # If the model always predicts x0 = c, the ODE solution is x(s) = c + (x - c) s / sigma_0; with
    # any order and corrector SA-Solver reproduces it and ends at c.
    sampling = ContinuousEDMSampling("eps", 0.1, 10.0)
    sigmas = torch.tensor([10.0, 5.0, 2.5, 1.0, 0.4, 0.0])
    x = torch.full((1, 1, 2, 2), 7.0)
    model = lambda x, sigma, **_: torch.full_like(x, 1.5)  # noqa: E731
    got = sample_sa_solver(model, x, sigmas, tau_func=tau_interval(0, 0, 0.0), model_sampling=sampling)
    assert torch.allclose(got, torch.full_like(x, 1.5), atol=1e-5)
    steps: list[float] = []
    sample_sa_solver(
        model, x, sigmas[:-1], tau_func=tau_interval(0, 0, 0.0), model_sampling=sampling,
        callback=lambda info: steps.append(float(info["x"].flatten()[0])),
    )  # fmt: skip
    assert all(
        math.isclose(v, 1.5 + 5.5 * float(s) / 10, rel_tol=1e-4) for v, s in zip(steps, sigmas, strict=False)
    )
