"""sample(): seeds, denoise, callbacks, interruption, inpainting, KSamplerAdvanced noise handling."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from engine.sampling import (
    ModelSampling,
    default_noise_sampler,
    prepare_noise,
    sample,
    sigmas_for,
    slice_sigmas,
)

from .conftest import gaussian_denoiser

LATENT = torch.zeros(2, 4, 4, 4)


def _run(model_sampling: ModelSampling, sampler: str, seed: int, **kwargs) -> Tensor:
    sigmas = kwargs.pop("sigmas", None)
    if sigmas is None:
        sigmas = sigmas_for(model_sampling, "karras", 5)
    latent = kwargs.pop("latent", LATENT)
    noise = prepare_noise(latent, seed)
    model = kwargs.pop("model", gaussian_denoiser(0.3, 0.5))
    return sample(model, noise, latent, sigmas, sampler, model_sampling=model_sampling, seed=seed, **kwargs)


@pytest.mark.parametrize("sampler", ["euler_ancestral", "dpmpp_2m_sde", "dpmpp_sde", "lcm", "ddpm"])
def test_same_seed_same_result_different_seed_different(model_sampling: ModelSampling, sampler: str) -> None:
    first, again = _run(model_sampling, sampler, 42), _run(model_sampling, sampler, 42)
    assert torch.equal(first, again)
    assert not torch.allclose(first, _run(model_sampling, sampler, 43))


def test_ancestral_noise_replays_the_seed_stream_as_comfyui(model_sampling: ModelSampling) -> None:
    """ComfyUI seeds the per-step generator with the seed itself, so on the CPU the first ancestral
    noise equals the initial noise; euler_ancestral worked out by hand with that stream."""
    seed, mean, std = 5, 0.3, 0.5
    sigmas = sigmas_for(model_sampling, "normal", 3)
    model = gaussian_denoiser(mean, std)
    result = _run(model_sampling, "euler_ancestral", seed, sigmas=sigmas, model=model)

    stream = torch.Generator().manual_seed(seed)
    initial = torch.randn(LATENT.shape, generator=stream)
    step_noise = torch.Generator().manual_seed(seed)  # the same stream again, from the start
    x = initial * (1 + sigmas[0] ** 2) ** 0.5  # sigmas[0] is sigma_max: "max denoise" scaling
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised = mean + std**2 / (std**2 + sigma**2) * (x - mean)
        sigma_up = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        if sigma_next == 0:
            x = denoised
            continue
        x = x + (x - denoised) / sigma * (sigma_down - sigma)
        x = x + torch.randn(LATENT.shape, generator=step_noise) * sigma_up
    assert torch.allclose(result, x, atol=1e-5)
    first_draw = default_noise_sampler(LATENT, seed=seed)(torch.tensor(1.0), torch.tensor(0.5))
    assert torch.equal(first_draw, initial)


def test_prepare_noise_is_cpu_seeded_and_per_batch_index() -> None:
    latent = torch.zeros(3, 4, 2, 2)
    expected = torch.randn(latent.shape, generator=torch.Generator().manual_seed(9))
    assert torch.equal(prepare_noise(latent, 9), expected)
    per_image = prepare_noise(latent, 9, batch_inds=[0, 1, 2])
    assert torch.equal(prepare_noise(latent[:1], 9, batch_inds=[2]), per_image[2:])
    assert torch.equal(prepare_noise(latent[:2], 9, batch_inds=[2, 0]), per_image[[2, 0]])


def test_callback_sees_every_step(model_sampling: ModelSampling) -> None:
    seen: list[dict] = []
    sigmas = sigmas_for(model_sampling, "normal", 6)
    _run(model_sampling, "heun", 0, sigmas=sigmas, callback=seen.append)
    assert [step["i"] for step in seen] == list(range(6))
    assert all(step["total"] == 6 for step in seen)
    assert [float(step["sigma"]) for step in seen] == sigmas[:-1].tolist()
    assert {"x", "sigma_hat", "denoised"} <= set(seen[0])


def test_exception_in_callback_interrupts_sampling(model_sampling: ModelSampling) -> None:
    calls = 0

    def model(x: Tensor, sigma: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        return torch.zeros_like(x)

    def interrupt(step: dict) -> None:
        if step["i"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(
            model_sampling,
            "euler",
            0,
            model=model,
            sigmas=sigmas_for(model_sampling, "normal", 10),
            callback=interrupt,
        )
    assert calls == 3


def test_noise_scaling_and_max_denoise(model_sampling: ModelSampling) -> None:
    seen: list[Tensor] = []
    latent = torch.full((1, 4, 2, 2), 0.5)
    noise = prepare_noise(latent, 1)
    full = sigmas_for(model_sampling, "karras", 4)
    partial = sigmas_for(model_sampling, "karras", 4, denoise=0.5)
    for sigmas in (full, partial):
        sample(
            gaussian_denoiser(0, 1),
            noise,
            latent,
            sigmas,
            "euler",
            model_sampling=model_sampling,
            callback=lambda step: seen.append(step["x"]) if step["i"] == 0 else None,
        )
    torch.testing.assert_close(seen[0], latent + noise * (1 + full[0] ** 2) ** 0.5)  # pure noise start
    torch.testing.assert_close(seen[1], latent + noise * partial[0])  # img2img start


def test_denoise_zero_and_empty_window_return_the_latent(model_sampling: ModelSampling) -> None:
    latent = torch.randn(1, 4, 2, 2)
    nothing = sigmas_for(model_sampling, "normal", 10, denoise=0.0)
    assert torch.equal(_run(model_sampling, "euler", 0, latent=latent, sigmas=nothing), latent)
    late_start = slice_sigmas(sigmas_for(model_sampling, "normal", 10), start_at_step=10)
    assert torch.equal(_run(model_sampling, "euler", 0, latent=latent, sigmas=late_start), latent)


def test_partial_denoise_stays_closer_to_the_input(model_sampling: ModelSampling) -> None:
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(2))
    results = [
        _run(
            model_sampling,
            "euler",
            0,
            latent=latent,
            sigmas=sigmas_for(model_sampling, "normal", 8, denoise=d),
        )
        for d in (0.2, 0.6, 1.0)
    ]
    distances = [float((r - latent).abs().mean()) for r in results]
    assert distances[0] < distances[1] < distances[2]


def test_split_schedule_with_leftover_noise_equals_one_run(model_sampling: ModelSampling) -> None:
    """KSamplerAdvanced chaining: steps 0-3 returning leftover noise, then 3-end with add_noise off."""
    sigmas = sigmas_for(model_sampling, "karras", 8)
    latent = torch.zeros(1, 4, 2, 2)
    first = _run(model_sampling, "euler", 3, latent=latent, sigmas=slice_sigmas(sigmas, 0, 3))
    second = _run(
        model_sampling, "euler", 3, latent=first, sigmas=slice_sigmas(sigmas, 3, 8), disable_noise=True
    )
    one_go = _run(model_sampling, "euler", 3, latent=latent, sigmas=sigmas)
    torch.testing.assert_close(second, one_go, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("sampler", ["euler", "ddim", "euler_ancestral", "dpmpp_2m"])
def test_inpainting_keeps_the_unmasked_latent(model_sampling: ModelSampling, sampler: str) -> None:
    latent = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(4))
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :, 2:] = 1.0
    out = _run(model_sampling, sampler, 0, latent=latent, denoise_mask=mask)
    torch.testing.assert_close(out[..., :2], latent[..., :2], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out[..., 2:], latent[..., 2:])
    unmasked = _run(model_sampling, sampler, 0, latent=latent, denoise_mask=torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(unmasked, _run(model_sampling, sampler, 0, latent=latent))


def test_inpainting_model_sees_the_noised_original_outside_the_mask(model_sampling: ModelSampling) -> None:
    latent = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(5))
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    inputs: list[tuple[Tensor, Tensor]] = []

    def model(x: Tensor, sigma: Tensor) -> Tensor:
        inputs.append((x.clone(), sigma.clone()))
        return torch.zeros_like(x)

    sigmas = sigmas_for(model_sampling, "normal", 3)
    noise = prepare_noise(latent, 0)
    sample(model, noise, latent, sigmas, "euler", model_sampling=model_sampling, denoise_mask=mask)
    for x, sigma in inputs:
        torch.testing.assert_close(x[..., 1], latent[..., 1] + sigma * noise[..., 1])
