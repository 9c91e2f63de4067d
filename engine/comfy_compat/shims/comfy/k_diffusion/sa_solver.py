"""ComfyUI's comfy.k_diffusion.sa_solver: SA-Solver's tau function and coefficients under ComfyUI's
names, from Loom's engine.sampling.samplers_sa_solver (packs build `ksampler("sa_solver",
{"tau_func": get_tau_interval_func(...), ...})` as SamplerSASolver does)."""

from __future__ import annotations

from engine.sampling.samplers_sa_solver import (
    adams_coefficients as compute_stochastic_adams_b_coeffs,
)
from engine.sampling.samplers_sa_solver import (
    exponential_coefficients as compute_exponential_coeffs,
)
from engine.sampling.samplers_sa_solver import (
    simple_order2_coefficients as compute_simple_stochastic_adams_b_coeffs,
)
from engine.sampling.samplers_sa_solver import tau_interval as get_tau_interval_func

__all__ = [
    "compute_exponential_coeffs",
    "compute_simple_stochastic_adams_b_coeffs",
    "compute_stochastic_adams_b_coeffs",
    "get_tau_interval_func",
]
