"""Custom-sampling nodes (schedulers, sigma tools, samplers, noise) through the node registry, against
values worked out by hand from the formulas in ComfyUI's source."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from engine.diffusion.diffusion_model import diffusion_model
from engine.diffusion.handles import ModelHandle
from engine.diffusion.latent_formats import latent_format
from engine.registry import NodeRegistry
from engine.sampling import ModelSampling, prepare_noise, sample
from engine.sampling.custom import DisableNoise, RandomNoise, SamplerObject
from engine.sampling.schedulers import AYS_NOISE_LEVELS

SD_MAX, SD_MIN = 14.614642, 0.0291675


def call(registry: NodeRegistry, node: str, **inputs: Any) -> tuple[Any, ...]:
    spec = registry.get(node)
    assert spec is not None, node
    return spec.invoke(spec.cls(), inputs, None)


def one(registry: NodeRegistry, node: str, **inputs: Any) -> Any:
    (value,) = call(registry, node, **inputs)
    return value


@pytest.fixture
def model() -> ModelHandle:
    """A MODEL value as the loader makes it; these nodes only read its schedule and latent format."""
    return ModelHandle(diffusion_model(None, ModelSampling(), "sd1", latent_format("sd1", 0.18215, {})))


def close(actual: torch.Tensor, expected: list[float], rel: float = 1e-5) -> None:
    assert actual.dtype == torch.float32
    assert actual.tolist() == pytest.approx(expected, rel=rel, abs=1e-7)


def test_karras_exponential_polyexponential(registry: NodeRegistry) -> None:
    karras = one(registry, "KarrasScheduler", steps=4, sigma_max=10.0, sigma_min=0.1, rho=7.0)
    lo, hi = 0.1 ** (1 / 7), 10 ** (1 / 7)
    close(karras, [(hi + k / 3 * (lo - hi)) ** 7 for k in range(4)] + [0.0])
    exponential = one(registry, "ExponentialScheduler", steps=3, sigma_max=10.0, sigma_min=0.1)
    close(exponential, [10.0, 1.0, 0.1, 0.0])
    poly = one(registry, "PolyexponentialScheduler", steps=3, sigma_max=10.0, sigma_min=0.1, rho=2.0)
    # log sigma = log 0.1 + ramp^2 * (log 10 - log 0.1) with ramp 1, 0.5, 0
    close(poly, [10.0, math.exp(math.log(0.1) + 0.25 * math.log(100)), 0.1, 0.0])


def test_vp_and_laplace(registry: NodeRegistry) -> None:
    vp = one(registry, "VPScheduler", steps=3, beta_d=19.9, beta_min=0.1, eps_s=0.001)
    times = [1.0, 0.5005, 0.001]
    close(vp, [math.sqrt(math.expm1(19.9 * t * t / 2 + 0.1 * t)) for t in times] + [0.0], rel=1e-4)
    laplace = one(registry, "LaplaceScheduler", steps=3, sigma_max=SD_MAX, sigma_min=SD_MIN, mu=0.0, beta=0.5)
    # Ends at log(1e-5) * -/+ 0.5 (about e^5.76 and e^-5.76), clamped; the middle is e^mu; no final 0.
    close(laplace, [SD_MAX, 1.0, SD_MIN])


def test_model_schedulers(registry: NodeRegistry, model: ModelHandle) -> None:
    table = model.sampling.sigmas
    turbo = one(registry, "SDTurboScheduler", model=model, steps=2, denoise=1.0)
    close(turbo, [float(table[999]), float(table[899]), 0.0])
    half = one(registry, "SDTurboScheduler", model=model, steps=2, denoise=0.5)
    close(half, [float(table[499]), float(table[399]), 0.0])
    # Beta(1, 1) quantiles are uniform: indices round(999 * (1 - k/5)) = 999, 799, 599, 400, 200.
    beta = one(registry, "BetaSamplingScheduler", model=model, steps=5, alpha=1.0, beta=1.0)
    close(beta, [float(table[i]) for i in (999, 799, 599, 400, 200)] + [0.0])


def test_basic_scheduler_denoise_keeps_the_tail(registry: NodeRegistry, model: ModelHandle) -> None:
    full = one(registry, "BasicScheduler", model=model, scheduler="karras", steps=8, denoise=1.0)
    assert len(full) == 9 and float(full[0]) == pytest.approx(SD_MAX, rel=1e-5)
    tail = one(registry, "BasicScheduler", model=model, scheduler="karras", steps=2, denoise=0.25)
    close(tail, full[-3:].tolist())  # int(2 / 0.25) = 8 steps, the last 2 kept
    assert len(one(registry, "BasicScheduler", model=model, scheduler="normal", steps=4, denoise=0.0)) == 0


def test_align_your_steps(registry: NodeRegistry) -> None:
    levels = list(AYS_NOISE_LEVELS["SD1"])
    close(
        one(registry, "AlignYourStepsScheduler", model_type="SD1", steps=10, denoise=1.0), [*levels[:-1], 0.0]
    )
    # Six points over the eleven levels fall exactly on every other level.
    five = one(registry, "AlignYourStepsScheduler", model_type="SD1", steps=5, denoise=1.0)
    close(five, [levels[i] for i in (0, 2, 4, 6, 8)] + [0.0])
    tail = one(registry, "AlignYourStepsScheduler", model_type="SD1", steps=5, denoise=0.6)
    close(tail, [levels[4], levels[6], levels[8], 0.0])  # round(5 * 0.6) = 3 steps
    # Seven points: log-linear between levels, e.g. the second at position 1/6 of the way, between 1 and 2.
    six = one(registry, "AlignYourStepsScheduler", model_type="SDXL", steps=6, denoise=1.0)
    xl = AYS_NOISE_LEVELS["SDXL"]
    between = math.exp(math.log(xl[1]) + (10 / 6 - 1) * (math.log(xl[2]) - math.log(xl[1])))
    assert float(six[1]) == pytest.approx(between, rel=1e-5)


def test_split_flip_and_set_first(registry: NodeRegistry) -> None:
    sigmas = torch.tensor([5.0, 4.0, 3.0, 2.0, 1.0, 0.0])
    high, low = call(registry, "SplitSigmas", sigmas=sigmas, step=2)
    assert high.tolist() == [5, 4, 3] and low.tolist() == [3, 2, 1, 0]
    high, low = call(registry, "SplitSigmasDenoise", sigmas=sigmas, denoise=0.4)
    assert high.tolist() == [5, 4, 3, 2] and low.tolist() == [2, 1, 0]
    high, low = call(registry, "SplitSigmasDenoise", sigmas=sigmas, denoise=0.0)
    assert high.tolist() == [] and low.tolist() == [0]  # ComfyUI's sigmas[:-0] is empty
    assert one(registry, "FlipSigmas", sigmas=torch.tensor([3.0, 1.0, 0.0])).tolist() == pytest.approx(
        [0.0001, 1, 3]
    )
    assert len(one(registry, "FlipSigmas", sigmas=torch.zeros(0))) == 0
    original = torch.tensor([3.0, 1.0, 0.0])
    assert one(registry, "SetFirstSigma", sigmas=original, sigma=10.0).tolist() == [10, 1, 0]
    assert original.tolist() == [3, 1, 0]
    with pytest.raises(ValueError, match="SetFirstSigma: input 'sigmas' is empty"):
        one(registry, "SetFirstSigma", sigmas=torch.zeros(0), sigma=1.0)


def test_invalid_schedule_inputs_name_node_and_input(registry: NodeRegistry) -> None:
    with pytest.raises(ValueError, match="ExponentialScheduler: input 'sigma_min' must be above 0"):
        one(registry, "ExponentialScheduler", steps=3, sigma_max=10.0, sigma_min=0.0)
    with pytest.raises(ValueError, match="KarrasScheduler: input 'rho'"):
        one(registry, "KarrasScheduler", steps=3, sigma_max=10.0, sigma_min=0.1, rho=0.0)


@pytest.mark.parametrize(
    ("node", "inputs", "name", "options"),
    [
        ("KSamplerSelect", {"sampler_name": "heun"}, "heun", {}),
        (
            "SamplerEulerAncestral",
            {"eta": 0.5, "s_noise": 0.9},
            "euler_ancestral",
            {"eta": 0.5, "s_noise": 0.9},
        ),
        (
            "SamplerDPMPP_2S_Ancestral",
            {"eta": 0.3, "s_noise": 1.1},
            "dpmpp_2s_ancestral",
            {"eta": 0.3, "s_noise": 1.1},
        ),
        (
            "SamplerDPMPP_SDE",
            {"eta": 0.7, "s_noise": 1.0, "r": 0.4, "noise_device": "cpu"},
            "dpmpp_sde",
            {"eta": 0.7, "s_noise": 1.0, "r": 0.4},
        ),
        (
            "SamplerDPMPP_2M_SDE",
            {"solver_type": "heun", "eta": 0.5, "s_noise": 0.8, "noise_device": "gpu"},
            "dpmpp_2m_sde_gpu",
            {"eta": 0.5, "s_noise": 0.8, "solver_type": "heun"},
        ),
        (
            "SamplerDPMPP_3M_SDE",
            {"eta": 1.0, "s_noise": 1.0, "noise_device": "cpu"},
            "dpmpp_3m_sde",
            {"eta": 1.0, "s_noise": 1.0},
        ),
        ("SamplerLMS", {"order": 3}, "lms", {"order": 3}),
        (
            "SamplerER_SDE",
            {"solver_type": "ER-SDE", "max_stage": 2, "eta": 0.5, "s_noise": 0.9},
            "er_sde",
            {"s_noise": 0.9, "max_stage": 2, "eta": None},
        ),
        (
            "SamplerER_SDE",
            {"solver_type": "Reverse-time SDE", "max_stage": 3, "eta": 0.5, "s_noise": 0.9},
            "er_sde",
            {"s_noise": 0.9, "max_stage": 3, "eta": 0.5},
        ),
        (
            "SamplerER_SDE",
            {"solver_type": "ODE", "max_stage": 3, "eta": 0.5, "s_noise": 0.9},
            "er_sde",
            {"s_noise": 0.0, "max_stage": 3, "eta": 0.0},
        ),
    ],
)
def test_sampler_nodes_bind_their_options(
    registry: NodeRegistry, node: str, inputs: dict[str, Any], name: str, options: dict[str, Any]
) -> None:
    sampler = one(registry, node, **inputs)
    assert isinstance(sampler, SamplerObject)
    assert sampler.name == name and dict(sampler.options) == options


def test_dpm_adaptive_node_binds_every_controller_setting(registry: NodeRegistry) -> None:
    inputs = {"order": 2, "rtol": 0.1, "atol": 0.01, "h_init": 0.2, "pcoeff": 0.1, "icoeff": 0.9}
    inputs |= {"dcoeff": 0.05, "accept_safety": 0.7, "eta": 0.0, "s_noise": 1.0}
    sampler = one(registry, "SamplerDPMAdaptative", **inputs)
    assert sampler.name == "dpm_adaptive" and dict(sampler.options) == inputs


def test_bound_options_change_the_result() -> None:
    """euler_ancestral with eta 0 is Euler; the sampler object passes its eta through to the sampler."""
    ms = ModelSampling()
    latent = torch.zeros(1, 4, 4, 4)
    noise = prepare_noise(latent, 2)
    sigmas = torch.tensor([10.0, 3.0, 1.0, 0.0])

    def model(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        return 0.5 * x / (1 + sigma.reshape(-1, 1, 1, 1) ** 2)

    euler = sample(model, noise, latent, sigmas, "euler", model_sampling=ms)
    no_eta = SamplerObject("euler_ancestral", {"eta": 0.0}).sample(
        model, noise, latent, sigmas, seed=2, model_sampling=ms
    )
    with_eta = SamplerObject("euler_ancestral", {"eta": 1.0}).sample(
        model, noise, latent, sigmas, seed=2, model_sampling=ms
    )
    assert torch.allclose(no_eta, euler, atol=1e-6)
    assert not torch.allclose(with_eta, euler, atol=1e-3)


def test_sampler_object_rejects_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown sampler 'nope'"):
        SamplerObject("nope")
    with pytest.raises(ValueError, match="sampler 'euler' has no option"):
        SamplerObject("euler", {"eta": 1.0})


def test_random_noise_is_ksamplers_noise(registry: NodeRegistry) -> None:
    latent = {"samples": torch.zeros(2, 4, 8, 8)}
    noise = one(registry, "RandomNoise", noise_seed=123)
    assert isinstance(noise, RandomNoise) and noise.seed == 123
    expected = torch.randn((2, 4, 8, 8), generator=torch.Generator().manual_seed(123))
    assert torch.equal(noise.generate_noise(latent), expected)
    batch = {"samples": torch.zeros(1, 4, 8, 8), "batch_index": [1]}
    assert torch.equal(noise.generate_noise(batch), expected[1:])
    disabled = one(registry, "DisableNoise")
    assert isinstance(disabled, DisableNoise) and disabled.seed == 0
    assert torch.equal(disabled.generate_noise(latent), torch.zeros(2, 4, 8, 8))


def test_add_noise_scales_by_the_schedule_span_in_model_space(
    registry: NodeRegistry, model: ModelHandle
) -> None:
    latent = {"samples": torch.full((1, 4, 2, 2), 0.5), "batch_index": [0]}
    sigmas = torch.tensor([3.0, 1.0, 0.5])
    noised = one(registry, "AddNoise", model=model, noise=RandomNoise(7), sigmas=sigmas, latent_image=latent)
    noise = prepare_noise(latent["samples"], 7)
    # process_in multiplies by 0.18215, the noise is added at sigma |3 - 0.5|, process_out divides back.
    assert torch.allclose(noised["samples"], 0.5 + noise * 2.5 / 0.18215, atol=1e-5)
    assert noised["batch_index"] == [0]
    empty = {"samples": torch.zeros(1, 4, 2, 2)}
    single = one(
        registry,
        "AddNoise",
        model=model,
        noise=RandomNoise(7),
        sigmas=torch.tensor([2.0]),
        latent_image=empty,
    )
    assert torch.allclose(single["samples"], noise * 2.0 / 0.18215, atol=1e-5)
    unchanged = one(
        registry, "AddNoise", model=model, noise=RandomNoise(7), sigmas=torch.zeros(0), latent_image=empty
    )
    assert unchanged is empty


def test_lcm_upscale_grows_the_latent_and_continues_the_seed_stream(registry: NodeRegistry) -> None:
    sampler = one(
        registry, "SamplerLCMUpscale", scale_ratio=2.0, scale_steps=-1, upscale_method="nearest-exact"
    )
    assert sampler.name == "lcm_upscale" and sampler.options["total_upscale"] == 2.0
    assert sampler.options["upscale_steps"] is None
    latent = torch.zeros(1, 4, 4, 4)
    noise = prepare_noise(latent, 5)
    sigmas = torch.tensor([8.0, 4.0, 2.0, 1.0, 0.0])
    seen: list[tuple[int, ...]] = []

    def model(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        seen.append(tuple(x.shape))
        return torch.zeros_like(x)

    out = sampler.sample(model, noise, latent, sigmas, seed=5, model_sampling=ModelSampling())
    # Default: about half the steps enlarge, by 1.5 then 2 (np.linspace(1, 2, 3)[1:]).
    assert seen == [(1, 4, 4, 4), (1, 4, 6, 6), (1, 4, 8, 8), (1, 4, 8, 8)]
    assert out.shape == (1, 4, 8, 8) and torch.equal(out, torch.zeros(1, 4, 8, 8))  # last step lands on 0
    # With a zero model, x after step 0 is 4 * (the seed's next draw after the initial noise), at 6x6.
    stream = torch.Generator().manual_seed(5)
    torch.randn((1, 4, 4, 4), generator=stream)
    expected_first = 4.0 * torch.randn((1, 4, 6, 6), generator=stream)
    captured: list[torch.Tensor] = []

    def recording(x: torch.Tensor, sigma: torch.Tensor, **_: Any) -> torch.Tensor:
        captured.append(x)
        return torch.zeros_like(x)

    sampler.sample(recording, noise, latent, sigmas, seed=5, model_sampling=ModelSampling())
    assert torch.allclose(captured[1], expected_first)
