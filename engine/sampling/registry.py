"""Sampler lookup by ComfyUI's KSampler names."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from torch import Tensor

from engine.sampling.noise import (
    NoiseSampler,
    brownian_tree_noise_sampler,
    default_noise_sampler,
    seed_stream_noise,
)
from engine.sampling.samplers_cfg_pp import (
    sample_euler_ancestral_cfg_pp,
    sample_euler_cfg_pp,
    sample_euler_pp,
)
from engine.sampling.samplers_cfg_pp_multistep import (
    sample_dpmpp_2m_cfg_pp,
    sample_dpmpp_2s_ancestral_cfg_pp,
    sample_gradient_estimation,
    sample_gradient_estimation_cfg_pp,
)
from engine.sampling.samplers_deis import sample_deis
from engine.sampling.samplers_dpmpp import (
    sample_dpmpp_2m,
    sample_dpmpp_2m_sde,
    sample_dpmpp_2s_ancestral,
    sample_dpmpp_3m_sde,
    sample_dpmpp_sde,
    sample_res_multistep,
)
from engine.sampling.samplers_er_sde import sample_er_sde
from engine.sampling.samplers_flow import (
    sample_dpm_2_ancestral_rf,
    sample_dpmpp_2m_sde_rf,
    sample_dpmpp_2s_ancestral_rf,
    sample_dpmpp_3m_sde_rf,
    sample_dpmpp_sde_rf,
    sample_euler_ancestral_rf,
    sample_lcm_rf,
)
from engine.sampling.samplers_karras import (
    sample_dpm_2,
    sample_dpm_2_ancestral,
    sample_euler,
    sample_euler_ancestral,
    sample_heun,
    sample_heunpp2,
    sample_ipndm,
    sample_ipndm_v,
    sample_lms,
)
from engine.sampling.samplers_lcm_upscale import sample_lcm_upscale
from engine.sampling.samplers_misc import sample_ddpm, sample_dpm_adaptive, sample_dpm_fast, sample_lcm
from engine.sampling.samplers_sa_solver import sample_sa_solver, sample_sa_solver_pece
from engine.sampling.samplers_seeds import sample_seeds_2, sample_seeds_3
from engine.sampling.samplers_unipc import sample_uni_pc, sample_uni_pc_bh2

Sampler = Callable[..., Tensor]
"""``sampler(model, x, sigmas, *, extra_args=None, callback=None, noise_sampler=None, **options)``."""

# The "_gpu" names are the same algorithms with the Brownian tree on the latent's device
# (see BROWNIAN_TREE_ON_CPU). "ddim" is Euler in ComfyUI (the sample()
# entry point gives it ComfyUI's separately seeded inpainting noise).
_SAMPLERS: dict[str, Sampler] = {
    "euler": sample_euler,
    "euler_cfg_pp": sample_euler_cfg_pp,
    "euler_ancestral": sample_euler_ancestral,
    "euler_ancestral_cfg_pp": sample_euler_ancestral_cfg_pp,
    "heun": sample_heun,
    "heunpp2": sample_heunpp2,
    "dpm_2": sample_dpm_2,
    "dpm_2_ancestral": sample_dpm_2_ancestral,
    "lms": sample_lms,
    "dpm_fast": sample_dpm_fast,
    "dpm_adaptive": sample_dpm_adaptive,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral,
    "dpmpp_2s_ancestral_cfg_pp": sample_dpmpp_2s_ancestral_cfg_pp,
    "dpmpp_sde": sample_dpmpp_sde,
    "dpmpp_sde_gpu": sample_dpmpp_sde,
    "dpmpp_2m": sample_dpmpp_2m,
    "dpmpp_2m_cfg_pp": sample_dpmpp_2m_cfg_pp,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_gpu": sample_dpmpp_2m_sde,
    "dpmpp_2m_sde_heun": partial(sample_dpmpp_2m_sde, solver_type="heun"),
    "dpmpp_2m_sde_heun_gpu": partial(sample_dpmpp_2m_sde, solver_type="heun"),
    "dpmpp_3m_sde": sample_dpmpp_3m_sde,
    "dpmpp_3m_sde_gpu": sample_dpmpp_3m_sde,
    "ddpm": sample_ddpm,
    "lcm": sample_lcm,
    "ipndm": sample_ipndm,
    "ipndm_v": sample_ipndm_v,
    "deis": sample_deis,
    "res_multistep": sample_res_multistep,
    "res_multistep_cfg_pp": partial(sample_res_multistep, cfg_pp=True),
    "res_multistep_ancestral": partial(sample_res_multistep, eta=1.0),
    "res_multistep_ancestral_cfg_pp": partial(sample_res_multistep, eta=1.0, cfg_pp=True),
    "gradient_estimation": sample_gradient_estimation,
    "gradient_estimation_cfg_pp": sample_gradient_estimation_cfg_pp,
    "er_sde": sample_er_sde,
    "seeds_2": sample_seeds_2,
    "seeds_3": sample_seeds_3,
    "sa_solver": sample_sa_solver,
    "sa_solver_pece": sample_sa_solver_pece,
    "ddim": sample_euler,
    "uni_pc": sample_uni_pc,
    "uni_pc_bh2": sample_uni_pc_bh2,
}

SAMPLER_NAMES: tuple[str, ...] = tuple(_SAMPLERS)

# Samplers that only custom sampling reaches (SamplerLCMUpscale), not offered by KSampler.
_CUSTOM_ONLY: dict[str, Sampler] = {"lcm_upscale": sample_lcm_upscale, "euler_pp": sample_euler_pp}

# Samplers that read the model's sampling (its half-log-SNR, its SDE interval); get_sampler binds it.
_NEEDS_MODEL_SAMPLING = frozenset(
    {"euler_cfg_pp", "euler_ancestral_cfg_pp", "sa_solver", "sa_solver_pece", "er_sde", "seeds_2", "seeds_3"}
)

# SDE samplers draw their noise from a Brownian tree, as ComfyUI's do; the value says whether
# the tree lives on the CPU (plain names) or on the latent's device (the "_gpu" names).
BROWNIAN_TREE_ON_CPU: dict[str, bool] = {
    "dpmpp_sde": True,
    "dpmpp_sde_gpu": False,
    "dpmpp_2m_sde": True,
    "dpmpp_2m_sde_gpu": False,
    "dpmpp_2m_sde_heun": True,
    "dpmpp_2m_sde_heun_gpu": False,
    "dpmpp_3m_sde": True,
    "dpmpp_3m_sde_gpu": False,
}


def noise_sampler_for(name: str, x: Tensor, sigmas: Tensor, seed: int | None) -> NoiseSampler:
    """The per-step noise ComfyUI gives the named sampler: a seeded Brownian tree for the SDE
    samplers, a seeded generator on x's device for the others."""
    if name == "lcm_upscale":  # its latent grows, so it draws from the seed's stream at each size
        return seed_stream_noise(x, seed)
    if name in BROWNIAN_TREE_ON_CPU and bool((sigmas > 0).any()):
        return brownian_tree_noise_sampler(x, sigmas, seed, on_cpu=BROWNIAN_TREE_ON_CPU[name])
    return default_noise_sampler(x, seed)


# Rectified-flow forms of the samplers that add noise (engine.sampling.samplers_flow), as ComfyUI
# switches to them for CONST models; the SDE ones need the model sampling for their first sigma.
_FLOW_SAMPLERS: dict[str, Sampler] = {
    "euler_ancestral": sample_euler_ancestral_rf,
    "dpm_2_ancestral": sample_dpm_2_ancestral_rf,
    "dpmpp_2s_ancestral": sample_dpmpp_2s_ancestral_rf,
    "lcm": sample_lcm_rf,
}
_FLOW_SDE_SAMPLERS: dict[str, Sampler] = {
    "dpmpp_sde": sample_dpmpp_sde_rf,
    "dpmpp_sde_gpu": sample_dpmpp_sde_rf,
    "dpmpp_2m_sde": sample_dpmpp_2m_sde_rf,
    "dpmpp_2m_sde_gpu": sample_dpmpp_2m_sde_rf,
    "dpmpp_2m_sde_heun": partial(sample_dpmpp_2m_sde_rf, solver_type="heun"),
    "dpmpp_2m_sde_heun_gpu": partial(sample_dpmpp_2m_sde_rf, solver_type="heun"),
    "dpmpp_3m_sde": sample_dpmpp_3m_sde_rf,
    "dpmpp_3m_sde_gpu": sample_dpmpp_3m_sde_rf,
}


def get_sampler(name: str, model_sampling: object = None) -> Sampler:
    """The sampler function registered under a ComfyUI sampler name (KSampler's or custom sampling's
    only); its rectified-flow form when `model_sampling` is a flow one
    (engine.sampling.model_sampling_flow)."""
    if name not in _SAMPLERS and name not in _CUSTOM_ONLY:
        raise ValueError(f"unknown sampler {name!r}; expected one of {SAMPLER_NAMES}")
    if name in _NEEDS_MODEL_SAMPLING and model_sampling is not None:
        return partial(_SAMPLERS[name], model_sampling=model_sampling)
    if getattr(model_sampling, "is_flow", False):
        if name in _FLOW_SDE_SAMPLERS:
            return partial(_FLOW_SDE_SAMPLERS[name], model_sampling=model_sampling)
        if name in _FLOW_SAMPLERS:
            return _FLOW_SAMPLERS[name]
    return _SAMPLERS[name] if name in _SAMPLERS else _CUSTOM_ONLY[name]
