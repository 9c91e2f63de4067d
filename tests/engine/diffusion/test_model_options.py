"""model_options hooks (cfg, pre/post cfg, unet wrapper, denoise mask) change sampling as ComfyUI's do."""

from __future__ import annotations

from typing import Any

import torch

from tests.engine.diffusion.conftest import sample, tiny_model


def test_unpatched_clone_samples_bit_identically(family: str) -> None:
    model = tiny_model(family)
    assert torch.equal(sample(model), sample(model.clone()))


def test_cfg_function_returning_cond_equals_cfg_one(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    seen: list[set[str]] = []

    def cond_only(args: dict[str, Any]) -> Any:
        seen.append(set(args))
        return args["cond"]

    patched.set_model_sampler_cfg_function(cond_only)
    # cfg=1 skips the negative; the patched run predicts both, and returns x - (x - cond).
    torch.testing.assert_close(sample(patched, cfg=5.0), sample(model, cfg=1.0), atol=2e-4, rtol=1e-4)
    assert {
        "cond",
        "uncond",
        "cond_scale",
        "input",
        "sigma",
        "cond_denoised",
        "uncond_denoised",
        "model",
    } <= seen[0]


def test_old_style_cfg_function_gets_cond_uncond_scale() -> None:
    model = tiny_model("sd1")
    patched = model.clone()
    patched.set_model_sampler_cfg_function(
        lambda cond, uncond, cond_scale: uncond + (cond - uncond) * cond_scale
    )
    torch.testing.assert_close(sample(patched, cfg=4.0), sample(model, cfg=4.0), atol=2e-4, rtol=1e-4)


def test_post_cfg_function_sees_and_replaces_denoised(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    sigmas: list[float] = []

    def zero(args: dict[str, Any]) -> Any:
        sigmas.append(float(args["sigma"].reshape(-1)[0]))
        assert args["denoised"].shape == args["cond_denoised"].shape == args["input"].shape
        return torch.zeros_like(args["denoised"])

    patched.set_model_sampler_post_cfg_function(zero)
    # Euler with a zero denoiser steps x to x * sigma_next / sigma; the last sigma is 0 (up to rounding).
    torch.testing.assert_close(sample(patched, steps=3), torch.zeros(1, 4, 8, 8), atol=1e-5, rtol=0)
    assert len(sigmas) == 3 and sigmas == sorted(sigmas, reverse=True)
    assert "sampler_post_cfg_function" not in model.model_options


def test_pre_cfg_function_rewrites_both_predictions(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    patched.set_model_sampler_pre_cfg_function(lambda args: [args["conds_out"][0], args["conds_out"][0]])
    # uncond replaced by cond: uncond + (cond - uncond) * cfg is cond whatever the cfg.
    torch.testing.assert_close(sample(patched, cfg=7.0), sample(model, cfg=1.0), atol=2e-4, rtol=1e-4)


def test_unet_wrapper_passing_through_is_identical_and_sees_the_batch(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    calls: list[list[int]] = []

    def wrapper(apply_model: Any, args: dict[str, Any]) -> Any:
        calls.append(args["cond_or_uncond"])
        assert args["input"].shape[0] == 2 and args["timestep"].shape == (2,)
        return apply_model(args["input"], args["timestep"], **args["c"])

    patched.set_model_unet_function_wrapper(wrapper)
    assert torch.equal(sample(patched), sample(model))
    assert calls == [[0, 1]] * 3


def test_unet_wrapper_can_replace_the_prediction() -> None:
    model = tiny_model("sd1")
    patched = model.clone()
    patched.set_model_unet_function_wrapper(lambda apply_model, args: torch.zeros_like(args["input"]))
    torch.testing.assert_close(sample(patched), torch.zeros(1, 4, 8, 8), atol=1e-5, rtol=0)


def test_disable_cfg1_optimization_predicts_the_negative_too() -> None:
    model = tiny_model("sd1")
    patched = model.clone()
    batches: list[list[int]] = []

    def post(args: dict[str, Any]) -> Any:
        batches.append([args["uncond"] is None])
        return args["denoised"]

    patched.set_model_sampler_post_cfg_function(post, disable_cfg1_optimization=True)
    sample(patched, cfg=1.0, steps=1)
    assert batches == [[False]]


def test_denoise_mask_function_reshapes_the_mask(family: str) -> None:
    model = tiny_model(family)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(9))
    keep_all = torch.zeros(1, 8, 8)
    # Only the scaling into and out of the model's latent space touches a fully kept latent.
    torch.testing.assert_close(sample(model, latent=latent, denoise_mask=keep_all), latent)
    patched = model.clone()
    received: list[Any] = []

    def regenerate_all(sigma: Any, mask: Any, extra_options: dict[str, Any]) -> Any:
        received.append((mask.shape, extra_options["sigmas"].shape))
        return torch.ones_like(mask)

    patched.set_model_denoise_mask_function(regenerate_all)
    torch.testing.assert_close(
        sample(patched, latent=latent, denoise_mask=keep_all), sample(model, latent=latent)
    )
    assert received[0] == ((1, 1, 8, 8), (4,))


def _guided(model: Any, positive: list[Any], negative: list[Any], cfg: float = 5.0) -> Any:
    from engine.diffusion.guider import CFGGuider

    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    return sample(model, guider=guider, steps=2)


def test_mask_conditioning_blends_by_mask_and_timestep_range_switches_entries() -> None:
    from tests.engine.diffusion.conftest import conditioning

    model = tiny_model("sd1")
    (a, options), (b, _) = conditioning(model, 1)[0], conditioning(model, 5)[0]
    negative = conditioning(model, 2)
    plain_a = _guided(model, [[a, options]], negative)
    full = torch.ones(1, 8, 8)
    # A full mask of strength 1 weighs like no mask; a zero-strength second entry adds nothing.
    masked = _guided(
        model,
        [[a, {"mask": full * 0 + 1, "mask_strength": 1.0}], [b, {"mask": full, "mask_strength": 0.0}]],
        negative,
    )
    torch.testing.assert_close(masked, plain_a, atol=1e-4, rtol=1e-4)
    # Pixel-space masks are resized to the latent; the left half follows a, the right half b.
    left = torch.zeros(1, 64, 64)
    left[:, :, :32] = 1.0
    halves = _guided(model, [[a, {"mask": left}], [b, {"mask": 1 - left}]], negative)
    assert not torch.allclose(halves, plain_a, atol=1e-3)
    # An entry active only in the first half of the schedule changes the result.
    ranged = _guided(model, [[a, options], [b, {"start_percent": 0.0, "end_percent": 0.5}]], negative)
    assert not torch.allclose(ranged, plain_a, atol=1e-3)
    never = _guided(model, [[a, options], [b, {"start_percent": 1.0, "end_percent": 1.0}]], negative)
    torch.testing.assert_close(never, plain_a)
