"""ComfyUI's custom-sampling samplers (SAMPLER) and noise (NOISE), and the link types SIGMAS, SAMPLER
and NOISE. Schedules and sigma tools are in custom_sigmas.py; guiders and SamplerCustom /
SamplerCustomAdvanced, which run all of these, in custom_guiders.py. The objects are
engine.sampling.custom's; the math is engine.sampling's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from engine.native import Input, Latent, Model, Node, Socket
from nodes.sampling.ksampler import SEED

Sigmas = Annotated[Any, Socket("SIGMAS")]
SamplerSocket = Annotated[Any, Socket("SAMPLER")]
Noise = Annotated[Any, Socket("NOISE")]

SAMPLERS = "sampling/custom_sampling/samplers"
NOISES = "sampling/custom_sampling/noise"

SIGMAS_IN = Input("The noise levels, highest first.")
ETA = Input(
    "Share of fresh noise added at each step (0: deterministic).", min=0.0, max=100.0, step=0.01, round=False
)
S_NOISE = Input("Scale of the added noise.", min=0.0, max=100.0, step=0.01, round=False)
NOISE_DEVICE = Input(
    "Where the Brownian tree of the noise lives: 'cpu' gives the same image on any machine, 'gpu' "
    "(the latent's device) matches ComfyUI's GPU results.",
    choices=("gpu", "cpu"),
)


def _sampler_names() -> Sequence[str]:
    from engine.sampling import SAMPLER_NAMES

    return SAMPLER_NAMES


def _sampler(name: str, **options: Any) -> Any:
    from engine.sampling.custom import SamplerObject

    return SamplerObject(name, options)


class KSamplerSelect(Node):
    """A sampler by KSampler's name, with its default options."""

    category = SAMPLERS

    def run(
        self, sampler_name: Annotated[str, Input("The sampling algorithm.", choices=_sampler_names)] = "euler"
    ) -> SamplerSocket:
        return _sampler(sampler_name)


class SamplerEulerAncestral(Node):
    """Euler ancestral with its noise settings."""

    category = SAMPLERS

    def run(
        self, eta: Annotated[float, ETA] = 1.0, s_noise: Annotated[float, S_NOISE] = 1.0
    ) -> SamplerSocket:
        return _sampler("euler_ancestral", eta=eta, s_noise=s_noise)


class SamplerDPMPP_2S_Ancestral(Node):
    """DPM++ 2S ancestral with its noise settings."""

    category = SAMPLERS

    def run(
        self, eta: Annotated[float, ETA] = 1.0, s_noise: Annotated[float, S_NOISE] = 1.0
    ) -> SamplerSocket:
        return _sampler("dpmpp_2s_ancestral", eta=eta, s_noise=s_noise)


class SamplerDPMPP_SDE(Node):
    """DPM++ SDE with its noise settings, midpoint ratio r and where its Brownian tree lives."""

    category = SAMPLERS

    def run(
        self,
        eta: Annotated[float, ETA] = 1.0,
        s_noise: Annotated[float, S_NOISE] = 1.0,
        r: Annotated[
            float,
            Input(
                "Where the intermediate step lands, as a share of the step.",
                min=0.0,
                max=100.0,
                step=0.01,
                round=False,
            ),
        ] = 0.5,
        noise_device: Annotated[str, NOISE_DEVICE] = "gpu",
    ) -> SamplerSocket:
        name = "dpmpp_sde" if noise_device == "cpu" else "dpmpp_sde_gpu"
        return _sampler(name, eta=eta, s_noise=s_noise, r=r)


class SamplerDPMPP_2M_SDE(Node):
    """DPM++ 2M SDE with its second-order solver, noise settings and Brownian tree device."""

    category = SAMPLERS

    def run(
        self,
        solver_type: Annotated[
            str, Input("The second-order correction.", choices=("midpoint", "heun"))
        ] = "midpoint",
        eta: Annotated[float, ETA] = 1.0,
        s_noise: Annotated[float, S_NOISE] = 1.0,
        noise_device: Annotated[str, NOISE_DEVICE] = "gpu",
    ) -> SamplerSocket:
        name = "dpmpp_2m_sde" if noise_device == "cpu" else "dpmpp_2m_sde_gpu"
        return _sampler(name, eta=eta, s_noise=s_noise, solver_type=solver_type)


class SamplerDPMPP_3M_SDE(Node):
    """DPM++ 3M SDE with its noise settings and Brownian tree device."""

    category = SAMPLERS

    def run(
        self,
        eta: Annotated[float, ETA] = 1.0,
        s_noise: Annotated[float, S_NOISE] = 1.0,
        noise_device: Annotated[str, NOISE_DEVICE] = "gpu",
    ) -> SamplerSocket:
        name = "dpmpp_3m_sde" if noise_device == "cpu" else "dpmpp_3m_sde_gpu"
        return _sampler(name, eta=eta, s_noise=s_noise)


class SamplerLMS(Node):
    """Linear multistep with its order."""

    category = SAMPLERS

    def run(
        self, order: Annotated[int, Input("How many past steps each step uses.", min=1, max=100)] = 4
    ) -> SamplerSocket:
        return _sampler("lms", order=order)


class SamplerDPMAdaptative(Node):
    """DPM-Solver adaptive (it picks its own steps between the schedule's ends) with its error controller."""

    category = SAMPLERS

    def run(
        self,
        order: Annotated[int, Input("Solver order.", min=2, max=3)] = 3,
        rtol: Annotated[
            float, Input("Relative error tolerance.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.05,
        atol: Annotated[
            float, Input("Absolute error tolerance.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.0078,
        h_init: Annotated[
            float, Input("First step size.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.05,
        pcoeff: Annotated[
            float, Input("Controller's proportional gain.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.0,
        icoeff: Annotated[
            float, Input("Controller's integral gain.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 1.0,
        dcoeff: Annotated[
            float, Input("Controller's derivative gain.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.0,
        accept_safety: Annotated[
            float, Input("Safety factor on accepting a step.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 0.81,
        eta: Annotated[float, ETA] = 0.0,
        s_noise: Annotated[float, S_NOISE] = 1.0,
    ) -> SamplerSocket:
        options = {"order": order, "rtol": rtol, "atol": atol, "h_init": h_init, "pcoeff": pcoeff}
        options |= {"icoeff": icoeff, "dcoeff": dcoeff, "accept_safety": accept_safety, "eta": eta}
        return _sampler("dpm_adaptive", s_noise=s_noise, **options)


ER_SDE_TYPES = ("ER-SDE", "Reverse-time SDE", "ODE")


class SamplerER_SDE(Node):
    """ER-SDE-Solver: its own noise schedule (ER-SDE), the reverse-time SDE of strength eta, or the ODE."""

    category = SAMPLERS

    def run(
        self,
        solver_type: Annotated[str, Input("Which SDE to solve.", choices=ER_SDE_TYPES)] = "ER-SDE",
        max_stage: Annotated[int, Input("Highest solver stage (order).", min=1, max=3)] = 3,
        eta: Annotated[
            float,
            Input(
                "Stochastic strength of the reverse-time SDE (0: the ODE); unused by ER-SDE.",
                min=0.0,
                max=100.0,
                step=0.01,
                round=False,
            ),
        ] = 1.0,
        s_noise: Annotated[float, S_NOISE] = 1.0,
    ) -> SamplerSocket:
        if solver_type == "ODE" or (solver_type == "Reverse-time SDE" and eta == 0):
            eta, s_noise = 0.0, 0.0
        scaler_eta = None if solver_type == "ER-SDE" else eta
        return _sampler("er_sde", s_noise=s_noise, max_stage=max_stage, eta=scaler_eta)


LCM_UPSCALE_METHODS = ("bislerp", "nearest-exact", "bilinear", "area", "bicubic")


class SamplerLCMUpscale(Node):
    """LCM sampling that enlarges the latent step by step up to scale_ratio, for LCM hires fixes."""

    category = SAMPLERS

    def run(
        self,
        scale_ratio: Annotated[
            float, Input("Final size over the starting size.", min=0.1, max=20.0, step=0.01)
        ] = 1.0,
        scale_steps: Annotated[
            int,
            Input("Steps over which to enlarge; -1 spreads it over about half.", min=-1, max=1000, step=1),
        ] = -1,
        upscale_method: Annotated[
            str, Input("How the latent is resampled.", choices=LCM_UPSCALE_METHODS)
        ] = "bislerp",
    ) -> SamplerSocket:
        from functools import partial

        from nodes.image.basic import upscale

        resize = partial(upscale, method=upscale_method)
        steps = None if scale_steps < 0 else scale_steps
        return _sampler("lcm_upscale", total_upscale=scale_ratio, upscale_steps=steps, resize=resize)


class RandomNoise(Node):
    """Noise from a seed, the same as KSampler's for that seed."""

    category = NOISES

    def run(self, noise_seed: Annotated[int, SEED] = 0) -> Noise:
        from engine.sampling.custom import RandomNoise as Random

        return Random(noise_seed)


class DisableNoise(Node):
    """No noise: sample from the latent as it is (to continue a partly denoised latent)."""

    category = NOISES

    def run(self) -> Noise:
        from engine.sampling.custom import DisableNoise as Disabled

        return Disabled()


class AddNoise(Node):
    """Add noise to a latent at the level the schedule spans (its first minus its last sigma)."""

    category = "_for_testing/custom_sampling/noise"

    def run(
        self,
        model: Annotated[Model, Input("The model whose latent space the noise is added in.")],
        noise: Annotated[Noise, Input("Where the noise comes from.")],
        sigmas: Annotated[Sigmas, SIGMAS_IN],
        latent_image: Annotated[Latent, Input("The latents to add noise to.")],
    ) -> Latent:
        import torch

        from engine.sampling.custom import model_sampling_of

        if len(sigmas) == 0:
            return latent_image
        samples = latent_image["samples"]
        noisy = noise.generate_noise(latent_image)
        scale = torch.abs(sigmas[0] - sigmas[-1]) if len(sigmas) > 1 else sigmas[0]
        latent_format = _latent_format_of(model)
        if torch.count_nonzero(samples) > 0:  # an empty latent stays 0, as in ComfyUI
            samples = latent_format.process_in(samples)
        noisy = model_sampling_of(model).noise_scaling(scale, noisy, samples)
        out = dict(latent_image)
        out["samples"] = torch.nan_to_num(latent_format.process_out(noisy), nan=0.0, posinf=0.0, neginf=0.0)
        return out


def _latent_format_of(model: Any) -> Any:
    """The MODEL's latent scaling (process_in / process_out)."""
    return model.latent
