"""Loom's sampling library: schedules, samplers and model sampling, ComfyUI-compatible.

Pure functions: no server, no nodes, no classifier-free guidance (that wraps the model
before it gets here). See docs/sampling.md.
"""

from engine.sampling._common import Callback, Model, ancestral_step, to_d
from engine.sampling.model_sampling import PREDICTION_TYPES, ModelSampling, denoiser
from engine.sampling.noise import NoiseSampler, default_noise_sampler, prepare_noise
from engine.sampling.registry import SAMPLER_NAMES, Sampler, get_sampler
from engine.sampling.sample import is_max_denoise, sample
from engine.sampling.schedulers import (
    SCHEDULER_NAMES,
    calculate_sigmas,
    get_sigmas_exponential,
    get_sigmas_karras,
    sigmas_for,
    slice_sigmas,
)

__all__ = [
    "PREDICTION_TYPES",
    "SAMPLER_NAMES",
    "SCHEDULER_NAMES",
    "Callback",
    "Model",
    "ModelSampling",
    "NoiseSampler",
    "Sampler",
    "ancestral_step",
    "calculate_sigmas",
    "default_noise_sampler",
    "denoiser",
    "get_sampler",
    "get_sigmas_exponential",
    "get_sigmas_karras",
    "is_max_denoise",
    "prepare_noise",
    "sample",
    "sigmas_for",
    "slice_sigmas",
    "to_d",
]
