"""UniPC multistep predictor-corrector sampler, ComfyUI's ``uni_pc`` (B(h) = h) and ``uni_pc_bh2``.

Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models" (arXiv:2302.04867), in its data-prediction (x0) form with the
multistep UniP predictor and UniC corrector of order up to 3.

ComfyUI runs it on the VP form of the k-diffusion schedule (alpha_t = 1 / sqrt(1 + sigma^2),
sigma_t = sigma / sqrt(1 + sigma^2), lambda = log(alpha_t / sigma_t) = -log(sigma)), scaling
x down by sqrt(1 + sigma_0^2) at the start and back up by 1 / alpha at the end. In data
prediction every alpha_t cancels out of the update, so the same steps are written here
directly in sigma space (x = x0 + sigma * eps), as the DPM-Solver++ samplers are; the
results agree to float rounding.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from engine.sampling._common import Callback, Model, Run
from engine.sampling.noise import NoiseSampler

VARIANTS = ("bh1", "bh2")
MAX_ORDER = 3


def unipc_coefficients(h: float, rks: list[float], variant: str) -> tuple[float, list[float], list[float]]:
    """B(h) and the predictor / corrector weights of one UniPC step of order ``len(rks)``.

    ``h`` is the step in lambda = -log(sigma); ``rks`` are the earlier points' offsets
    (lambda_k - lambda_now) / h, newest first, followed by 1.0 for the step's target.
    Returns ``(B_h, rhos_p, rhos_c)``: ``len(rhos_p) == order - 1`` weights for the
    predictor's differences and ``order`` weights for the corrector (the last one for
    the new model evaluation). Everything is computed in float64.
    """
    order = len(rks)
    hh = -h  # data prediction integrates in -h
    if variant == "bh1":
        b_h = hh
    elif variant == "bh2":
        b_h = math.expm1(hh)
    else:
        raise ValueError(f"unknown UniPC variant {variant!r}; expected one of {VARIANTS}")
    # phi_{k+1}(hh) * hh-scaled terms: phi_k(hh) / hh - 1 / k! recursively, times k! / B(h) (paper eq. 9)
    b: list[float] = []
    h_phi_k = math.expm1(hh) / hh - 1.0
    factorial = 1
    for k in range(1, order + 1):
        b.append(h_phi_k * factorial / b_h)
        factorial *= k + 1
        h_phi_k = h_phi_k / hh - 1.0 / factorial
    powers = torch.tensor([[r**k for r in rks] for k in range(order)], dtype=torch.float64)
    rhs = torch.tensor(b, dtype=torch.float64)
    if order == 1:
        rhos_p: list[float] = []
    elif order == 2:
        rhos_p = [0.5]  # the paper's simplified second-order predictor, as in the reference code
    else:
        rhos_p = torch.linalg.solve(powers[:-1, :-1], rhs[:-1]).tolist()
    rhos_c = [0.5] if order == 1 else torch.linalg.solve(powers, rhs).tolist()
    return b_h, rhos_p, rhos_c


def _weighted(weights: list[float], tensors: list[Tensor]) -> Tensor | float:
    total: Tensor | float = 0.0
    for w, t in zip(weights, tensors, strict=True):
        total = total + w * t
    return total


@torch.no_grad()
def sample_uni_pc(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
    variant: str = "bh1",
) -> Tensor:
    """UniPC (Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast
    Sampling of Diffusion Models"), multistep, data prediction, as ComfyUI's ``uni_pc``.

    Step ``i`` (from sigmas[i] to sigmas[i+1], ``n`` steps in all) uses order
    ``min(3, i + 1, n - i)``: lower order while the history fills up and towards the end
    (``lower_order_final``), so the last step is always first order (DDIM). After every
    step except the last, the model is evaluated at the predicted point and the UniC
    corrector recomputes the step with it; that evaluation is reused by the next step, so
    the cost is one model call per step. ``variant`` picks B(h): ``"bh1"`` (B(h) = h,
    ComfyUI's ``uni_pc``) or ``"bh2"`` (B(h) = e^h - 1, ``uni_pc_bh2``).

    A final sigma of 0 is reached exactly: the last (first-order) step to 0 returns the
    last denoised prediction. ComfyUI instead stops at sigma 0.001, leaving
    0.001 * eps of noise (see docs/sampling.md). Deterministic: ``noise_sampler`` is unused.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; expected one of {VARIANTS}")
    steps = len(sigmas) - 1
    run = Run(model, x, extra_args, callback, noise_sampler, steps)
    sig = [float(s) for s in sigmas]
    # (denoised, lambda = -log sigma) at earlier points, newest last
    history: list[tuple[Tensor, float]] = []
    denoised = run.denoise(x, sigmas[0]) if steps > 0 else x
    for i in range(steps):
        run.report(i, x, sigmas[i], sigmas[i], denoised)
        point = (denoised, -math.log(sig[i]))
        if history and history[-1][1] == point[1]:
            history[-1] = point  # a repeated sigma is the same point, not a new one
        else:
            history = [*history[-(MAX_ORDER - 1) :], point]
        if sig[i + 1] == 0:
            return denoised  # first-order step to sigma 0: exactly the denoised prediction
        if sig[i + 1] == sig[i]:
            continue  # zero-length step (repeated sigma): nothing to integrate
        order = min(MAX_ORDER, len(history), steps - i)
        m0, lambda0 = history[-1]
        h = math.log(sig[i] / sig[i + 1])
        earlier = history[-order:-1][::-1]  # newest first
        rks = [(lam - lambda0) / h for _, lam in earlier]
        diffs = [(m - m0) / r for (m, _), r in zip(earlier, rks, strict=True)]
        b_h, rhos_p, rhos_c = unipc_coefficients(h, [*rks, 1.0], variant)
        # first-order (DDIM / DPM-Solver++ 1) step; UniP and UniC add B(h)-weighted differences
        x_base = (sig[i + 1] / sig[i]) * x - math.expm1(-h) * m0
        x_pred = x_base - b_h * _weighted(rhos_p, diffs)
        if i + 1 == steps:
            x = x_pred  # no corrector after the last step: it would need one more model call
            break
        denoised = run.denoise(x_pred, sigmas[i + 1])
        x = x_base - b_h * (_weighted(rhos_c[:-1], diffs) + rhos_c[-1] * (denoised - m0))
    return x


@torch.no_grad()
def sample_uni_pc_bh2(
    model: Model,
    x: Tensor,
    sigmas: Tensor,
    *,
    extra_args: dict[str, Any] | None = None,
    callback: Callback | None = None,
    noise_sampler: NoiseSampler | None = None,
) -> Tensor:
    """UniPC with B(h) = e^h - 1 (Zhao et al. 2023), ComfyUI's ``uni_pc_bh2``; see :func:`sample_uni_pc`."""
    return sample_uni_pc(
        model, x, sigmas, extra_args=extra_args, callback=callback, noise_sampler=noise_sampler, variant="bh2"
    )
