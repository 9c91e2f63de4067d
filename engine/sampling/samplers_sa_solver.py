"""SA-Solver, the stochastic Adams solver of Xue et al. 2023 (NeurIPS, arXiv:2309.05019), in data
prediction form over the half-log-SNR lambda = log(alpha / sigma), as ComfyUI runs it.

Each step predicts x at the next sigma from the last `predictor_order` denoised predictions
(an Adams-Bashforth-like multistep with stochastic strength tau), then, at the next evaluation,
corrects the same step with up to `corrector_order` predictions including the new one
(Adams-Moulton-like). The b coefficients integrate the Lagrange polynomials through the past lambdas
against exp((1 + tau^2) lambda) (eqs. 15 and 18). Noise of strength tau is added while sigma lies in
the SDE interval given by `tau_func`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run
from engine.sampling.noise import NoiseSampler

TauFunc = Callable[[Any], float]


def tau_interval(start_sigma: float, end_sigma: float, eta: float = 1.0) -> TauFunc:
    """tau = eta while start_sigma >= sigma >= end_sigma, else 0 (ODE steps); eta <= 0 is always ODE."""

    def tau(sigma: Any) -> float:
        if eta <= 0:
            return 0.0
        value = float(sigma)
        return eta if start_sigma >= value >= end_sigma else 0.0

    return tau


def exponential_coefficients(s: Tensor, t: Tensor, solver_order: int, tau_t: float) -> Tensor:
    """(1 + tau^2) * integral_s^t exp((1 + tau^2) u) u^p du / exp((1 + tau^2) t) for p < order.

    Integrating by parts, I_p = [u^p e^(m u) / m]_s^t - (p / m) I_(p-1) with m = 1 + tau^2, so
    m I_p = sum_k (-1)^(p-k) p! / (k! m^(p-k)) [u^k e^(m u)]_s^t: a lower-triangular matrix applied to
    the boundary terms t^k - s^k e^(-m h).
    """
    m = 1 + tau_t**2
    h = t - s
    powers = torch.arange(solver_order, dtype=s.dtype, device=s.device)
    boundary = t**powers - s**powers * (-m * h).exp()
    depth = powers.unsqueeze(1) - powers.unsqueeze(0)
    log_fact = (powers + 1).lgamma()
    log_coeff = log_fact.unsqueeze(1) - log_fact.unsqueeze(0)
    if tau_t > 0:
        log_coeff = log_coeff - depth * math.log(m)
    sign = torch.where(depth % 2 == 0, 1.0, -1.0)
    return (log_coeff.exp() * sign).tril() @ boundary


def simple_order2_coefficients(
    sigma_next: Tensor,
    curr_lambdas: Tensor,
    lambda_s: Tensor,
    lambda_t: Tensor,
    tau_t: float,
    is_corrector_step: bool = False,
) -> Tensor:
    """The simplified second-order coefficients of the paper's appendix D (older first)."""
    m = 1 + tau_t**2
    h = lambda_t - lambda_s
    alpha_t = sigma_next * lambda_t.exp()
    whole = alpha_t * (-h * m).expm1().neg()
    if is_corrector_step:
        newest = alpha_t * (0.5 * m * h)
        return torch.stack([whole - newest, newest])
    older = alpha_t * (0.5 * m * h**2) / (curr_lambdas[-2] - lambda_s)
    return torch.stack([older, whole - older])


def adams_coefficients(
    sigma_next: Tensor,
    curr_lambdas: Tensor,
    lambda_s: Tensor,
    lambda_t: Tensor,
    tau_t: float,
    simple_order_2: bool = False,
    is_corrector_step: bool = False,
) -> Tensor:
    """b_i of one step from lambda_s to lambda_t through the predictions at `curr_lambdas` (oldest
    first). Parameter names are ComfyUI's (compute_stochastic_adams_b_coeffs)."""
    if simple_order_2 and curr_lambdas.shape[0] == 2:
        return simple_order2_coefficients(
            sigma_next, curr_lambdas, lambda_s, lambda_t, tau_t, is_corrector_step
        )
    order = curr_lambdas.shape[0]
    moments = exponential_coefficients(lambda_s, lambda_t, order, tau_t)
    # The integral of each Lagrange basis polynomial: solve V^T b = moments with V the Vandermonde matrix.
    basis_integrals = torch.linalg.solve(torch.vander(curr_lambdas, order, increasing=True).T, moments)
    return sigma_next * lambda_t.exp() * basis_integrals


def half_log_snr(sigmas: Tensor, model_sampling: Any) -> Tensor:
    if getattr(model_sampling, "is_flow", False):
        return sigmas.logit().neg()
    return sigmas.log().neg()


def _first_sigma_inside(sigmas: Tensor, model_sampling: Any) -> Tensor:
    """A rectified-flow schedule starting at sigma 1 (infinite log-SNR) starts just inside it instead."""
    if len(sigmas) > 1 and getattr(model_sampling, "is_flow", False) and sigmas[0] >= 1:
        sigmas = sigmas.clone()
        sigmas[0] = float(model_sampling.percent_to_sigma(1e-4))
    return sigmas


def _combine(predictions: list[Tensor], coefficients: Tensor) -> Tensor:
    return torch.tensordot(torch.stack(predictions, dim=1), coefficients, dims=([1], [0]))


@torch.no_grad()
def sample_sa_solver(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    tau_func: TauFunc | None = None,
    s_noise: float = 1.0,
    predictor_order: int = 3,
    corrector_order: int = 4,
    use_pece: bool = False,
    simple_order_2: bool = False,
    model_sampling: Any = None,
) -> Tensor:
    """SA-Solver predictor-corrector steps; `use_pece` re-evaluates the model on the corrected state."""
    if len(sigmas) <= 1:
        return x
    if model_sampling is None:  # a bare denoiser: take SD's discrete eps schedule for the SDE interval
        from engine.sampling.model_sampling import ModelSampling

        model_sampling = ModelSampling("eps")
    run = Run(model, x, extra_args, callback, noise_sampler, len(sigmas) - 1)
    sigmas = _first_sigma_inside(sigmas, model_sampling)
    lambdas = half_log_snr(sigmas, model_sampling)
    if tau_func is None:
        tau_func = tau_interval(model_sampling.percent_to_sigma(0.2), model_sampling.percent_to_sigma(0.8))
    keep = max(predictor_order, corrector_order)
    lower_order_to_end = float(sigmas[-1]) == 0
    x_pred, tau = x, 0.0
    h: Tensor = torch.zeros(())  # the last predictor step's lambda increment
    noise: Tensor | float = 0.0  # the last predictor step's added noise
    predictions: list[Tensor] = []
    for i in range(len(sigmas) - 1):
        denoised = run.denoise(x_pred, sigmas[i])
        run.report(i, x_pred, sigmas[i], sigmas[i], denoised)
        predictions = [*predictions, denoised][-keep:]
        p_order = min(predictor_order, len(predictions))
        last_step = sigmas[i + 1] == 0
        c_order = 0 if i == 0 or (last_step and not use_pece) else min(corrector_order, len(predictions))
        if lower_order_to_end:
            p_order = min(p_order, len(sigmas) - 2 - i)
            c_order = min(c_order, len(sigmas) - 1 - i)
        if c_order == 0:
            x = x_pred
        else:
            b = adams_coefficients(
                sigmas[i],
                lambdas[i - c_order + 1 : i + 1],
                lambdas[i - 1],
                lambdas[i],
                tau,
                simple_order_2,
                True,
            )
            decay = sigmas[i] / sigmas[i - 1] * (-(tau**2) * h).exp()
            x = decay * x + _combine(predictions[-c_order:], b)
            if tau > 0 and s_noise > 0:
                x = x + noise  # the predictor's noise of this same step
            if use_pece:
                denoised = run.denoise(x, sigmas[i])
                predictions[-1] = denoised
        if last_step:
            x = denoised
            continue
        tau = tau_func(sigmas[i + 1])
        b = adams_coefficients(
            sigmas[i + 1], lambdas[i - p_order + 1 : i + 1], lambdas[i], lambdas[i + 1], tau, simple_order_2
        )
        h = lambdas[i + 1] - lambdas[i]
        decay = sigmas[i + 1] / sigmas[i] * (-(tau**2) * h).exp()
        x_pred = decay * x + _combine(predictions[-p_order:], b)
        if tau > 0 and s_noise > 0:
            spread = (-2 * tau**2 * h).expm1().neg().sqrt()
            noise = run.noise(sigmas[i], sigmas[i + 1]) * sigmas[i + 1] * spread * s_noise
            x_pred = x_pred + noise
    return x


@torch.no_grad()
def sample_sa_solver_pece(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    tau_func: TauFunc | None = None,
    s_noise: float = 1.0,
    predictor_order: int = 3,
    corrector_order: int = 4,
    simple_order_2: bool = False,
    model_sampling: Any = None,
) -> Tensor:
    """SA-Solver in PECE mode (predict, evaluate, correct, evaluate)."""
    return sample_sa_solver(
        model,
        x,
        sigmas,
        extra_args=extra_args,
        callback=callback,
        noise_sampler=noise_sampler,
        tau_func=tau_func,
        s_noise=s_noise,
        predictor_order=predictor_order,
        corrector_order=corrector_order,
        use_pece=True,
        simple_order_2=simple_order_2,
        model_sampling=model_sampling,
    )
