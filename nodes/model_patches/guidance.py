"""Guidance patches on a MODEL clone: RescaleCFG (cfg function), CFGZeroStar (post-cfg function) and
DifferentialDiffusion (denoise-mask function)."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node, Output

MODEL_IN = Input("The model to patch; the input itself is left unchanged.")


def _rescaled_cfg(multiplier: float) -> Any:
    """CFG done on the v-prediction of cond and uncond, its std pulled back towards the cond's."""
    import torch

    def rescale(args: dict[str, Any]) -> Any:
        x_orig = args["input"]
        sigma = args["sigma"]
        sigma = sigma.view(sigma.shape[:1] + (1,) * (x_orig.ndim - 1))
        scale = (sigma * sigma + 1.0) ** 0.5
        x = x_orig / (sigma * sigma + 1.0)
        # args' cond/uncond are x - denoised; rebuild each as a v-prediction.
        cond = (x - (x_orig - args["cond"])) * scale / sigma
        uncond = (x - (x_orig - args["uncond"])) * scale / sigma
        guided = uncond + args["cond_scale"] * (cond - uncond)
        ratio = torch.std(cond, dim=(1, 2, 3), keepdim=True) / torch.std(guided, dim=(1, 2, 3), keepdim=True)
        final = multiplier * guided * ratio + (1.0 - multiplier) * guided
        return x_orig - (x - final * sigma / scale)

    return rescale


class RescaleCFG(Node):
    """Rescale classifier-free guidance so high cfg does not over-expose (for v-prediction/zsnr models)."""

    category = "advanced/model"

    def run(
        self,
        model: Annotated[Model, MODEL_IN],
        multiplier: Annotated[
            float,
            Input("How much of the rescaled guidance to use (0: plain CFG).", min=0.0, max=1.0, step=0.01),
        ] = 0.7,
    ) -> Model:
        patched = model.clone()
        patched.set_model_sampler_cfg_function(_rescaled_cfg(multiplier))
        return patched


def _cfg_zero_star(args: dict[str, Any]) -> Any:
    """Scale the uncond prediction by the projection of the cond noise on the uncond noise."""
    import torch

    x = args["input"]
    cond, uncond = args["cond_denoised"], args["uncond_denoised"]
    pos = (x - cond).reshape(x.shape[0], -1)
    neg = (x - uncond).reshape(x.shape[0], -1)
    alpha = torch.sum(pos * neg, dim=1, keepdim=True) / (torch.sum(neg**2, dim=1, keepdim=True) + 1e-8)
    alpha = alpha.reshape([x.shape[0]] + [1] * (x.ndim - 1))
    return args["denoised"] + uncond * (alpha - 1.0) + args["cond_scale"] * uncond * (1.0 - alpha)


class CFGZeroStar(Node):
    """CFG-Zero*: guidance with the unconditional prediction rescaled by its optimal scale."""

    category = "advanced/guidance"

    def run(self, model: Annotated[Model, MODEL_IN]) -> Annotated[Model, Output("patched_model")]:
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(_cfg_zero_star)
        return patched


def _differential_mask(strength: float) -> Any:
    """Each step denoises only where the mask is at least the fraction of the schedule still ahead."""

    def mask_at(sigma: Any, denoise_mask: Any, extra_options: dict[str, Any]) -> Any:
        sampling = extra_options["model"].inner_model.model_sampling
        sigmas = extra_options["sigmas"]
        sigma_to = sigmas[-1] if sigmas[-1] > sampling.sigma_min else sampling.sigma_min
        ts_from = sampling.timestep(sigmas[0])
        ts_to = sampling.timestep(sigma_to)
        threshold = (sampling.timestep(sigma[0]) - ts_to) / (ts_from - ts_to)
        binary = (denoise_mask >= threshold).to(denoise_mask.dtype)
        if strength and strength < 1:
            return strength * binary + (1 - strength) * denoise_mask
        return binary

    return mask_at


class DifferentialDiffusion(Node):
    """Inpaint with a soft mask: each pixel is denoised for a share of the steps given by its mask value."""

    display_name = "Differential Diffusion"
    category = "_for_testing"
    experimental = True

    def run(
        self,
        model: Annotated[Model, MODEL_IN],
        strength: Annotated[
            float | None,
            Input(
                "Blend of the stepped mask with the soft mask (1: stepped only).",
                min=0.0,
                max=1.0,
                step=0.01,
                extra={"default": 1.0},
            ),
        ] = None,
    ) -> Model:
        patched = model.clone()
        patched.set_model_denoise_mask_function(_differential_mask(1.0 if strength is None else strength))
        return patched
