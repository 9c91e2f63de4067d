"""Guidance from a degraded second prediction, on the ModelPatcher's block-id attention patches and
post-cfg functions (ComfyUI's SelfAttentionGuidance and PerturbedAttentionGuidance).

* Self-Attention Guidance (Hong et al. 2023, arXiv:2210.00939): the middle block's self-attention
  of the unconditional pass is recorded; where the image attends most, the unconditional prediction
  is blurred, re-noised and predicted again, and the guided result moves away from that prediction.
* Perturbed-Attention Guidance (Ahn et al. 2024, arXiv:2403.17377): a second conditional pass with
  the middle block's self-attention replaced by identity (each token keeps its own value); the
  result moves away from it.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Input, Model, Node

SAG_THRESHOLD = 1.0  # a token is "attended" when its attention, summed over queries, beats the mean
BLUR_KERNEL = 9


def attention_with_probabilities(q: Any, k: Any, v: Any, heads: int) -> tuple[Any, Any]:
    """softmax(q k^T / sqrt(d)) v for (batch, tokens, heads * d) inputs, computed in float32; returns the
    output in q's layout and dtype and the attention probabilities as (batch * heads, tokens, tokens),
    batch-major."""
    batch, _, width = q.shape
    dim_head = width // heads
    q, k, v = (t.reshape(batch, -1, heads, dim_head).transpose(1, 2).float() for t in (q, k, v))
    probs = ((q @ k.transpose(-1, -2)) * dim_head**-0.5).softmax(dim=-1)
    out = (probs @ v).transpose(1, 2).reshape(batch, -1, heads * dim_head).to(q.dtype)
    return out, probs.reshape(batch * heads, probs.shape[-2], probs.shape[-1])


def gaussian_blur(image: Any, kernel_size: int, sigma: float) -> Any:
    """Separable Gaussian blur per channel with reflected borders; sigma 0 leaves the image as it is."""
    import torch
    import torch.nn.functional as F

    if sigma <= 0:
        return image
    half = (kernel_size - 1) * 0.5
    x = torch.linspace(-half, half, steps=kernel_size)
    weights = torch.exp(-0.5 * (x / sigma) ** 2)
    weights = (weights / weights.sum()).to(device=image.device, dtype=image.dtype)
    channels = image.shape[-3]
    kernel = torch.outer(weights, weights).expand(channels, 1, kernel_size, kernel_size)
    pad = kernel_size // 2
    padded = F.pad(image, [pad, pad, pad, pad], mode="reflect")
    return F.conv2d(padded, kernel, groups=channels)


def attention_grid(tokens: int, height: int, width: int) -> tuple[int, int]:
    """Rows and columns of a block's token grid, found from the latent's aspect ratio (the divisor of
    `tokens` nearest to the expected row count)."""
    expected = round(math.sqrt((height / width) * tokens))
    for offset in range(math.floor(math.sqrt(tokens) / 2)):
        for rows in (expected + offset, max(1, expected - offset)):
            if tokens % rows == 0:
                return rows, tokens // rows
    raise ValueError(
        f"SelfAttentionGuidance: cannot lay {tokens} attention tokens out as a grid for a "
        f"{height}x{width} latent"
    )


def blur_where_attended(x0: Any, probs: Any, sigma: float, threshold: float = SAG_THRESHOLD) -> Any:
    """x0 blurred where the attention map (heads averaged, summed over queries) exceeds `threshold`."""
    import torch.nn.functional as F

    batch, _, height, width = x0.shape
    queries, keys = probs.shape[-2], probs.shape[-1]
    attended = probs.reshape(batch, -1, queries, keys).mean(1).sum(1) > threshold
    rows, cols = attention_grid(keys, height, width)
    mask = attended.reshape(batch, rows, cols).unsqueeze(1).to(probs.dtype)
    mask = F.interpolate(mask, (height, width)).to(x0.dtype)
    return gaussian_blur(x0, BLUR_KERNEL, sigma) * mask + x0 * (1 - mask)


class _SagState:
    """The attention patch records the uncond pass's probabilities; the post-cfg function uses them."""

    def __init__(self, scale: float, blur_sigma: float) -> None:
        self.scale = scale
        self.blur_sigma = blur_sigma
        self.probs: Any = None

    def __deepcopy__(self, memo: dict[int, Any]) -> _SagState:
        # ModelPatcher.clone deep-copies model_options; the two patches must keep sharing one state.
        return self

    def attention(self, q: Any, k: Any, v: Any, extra_options: dict[str, Any]) -> Any:
        from engine.diffusion.unet_hooks import optimized_attention

        heads = extra_options["n_heads"]
        cond_or_uncond = extra_options.get("cond_or_uncond", [])
        if 1 not in cond_or_uncond:
            return optimized_attention(q, k, v, heads)
        out, probs = attention_with_probabilities(q, k, v, heads)
        per_entry = heads * (q.shape[0] // len(cond_or_uncond))
        index = cond_or_uncond.index(1)
        self.probs = probs[per_entry * index : per_entry * (index + 1)]
        return out

    def post_cfg(self, args: dict[str, Any]) -> Any:
        from engine.diffusion.guidance import calc_cond_batch

        result = args["denoised"]
        if min(result.shape[2:]) <= 4 or self.probs is None:  # too small for the blur's reflected border
            return result
        uncond_pred, x = args["uncond_denoised"], args["input"]
        degraded = blur_where_attended(uncond_pred, self.probs, self.blur_sigma)
        renoised = degraded + x - uncond_pred
        (again,) = calc_cond_batch(
            args["model"], [args["uncond"]], renoised, args["sigma"], args["model_options"]
        )
        return result + (degraded - again) * self.scale


class SelfAttentionGuidance(Node):
    """Self-Attention Guidance: steer away from a prediction of the image blurred where it attends most."""

    display_name = "Self-Attention Guidance"
    category = "_for_testing"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        scale: Annotated[float, Input("Guidance strength (0: none).", min=-2.0, max=5.0, step=0.01)] = 0.5,
        blur_sigma: Annotated[
            float, Input("Blur of the degraded prediction, in latent pixels.", min=0.0, max=10.0, step=0.1)
        ] = 2.0,
    ) -> Model:
        state = _SagState(scale, blur_sigma)
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(state.post_cfg, disable_cfg1_optimization=True)
        patched.set_model_attn1_replace(state.attention, "middle", 0, 0)
        return patched


def identity_attention(q: Any, k: Any, v: Any, extra_options: dict[str, Any], mask: Any = None) -> Any:
    """Self-attention replaced by the identity map: every token keeps its own value."""
    return v


def _pag_post_cfg(scale: float) -> Any:
    def post_cfg(args: dict[str, Any]) -> Any:
        from engine.diffusion.guidance import calc_cond_batch
        from engine.diffusion.model_options import set_model_options_patch_replace

        result = args["denoised"]
        if scale == 0:
            return result
        options = set_model_options_patch_replace(
            dict(args["model_options"]), identity_attention, "attn1", "middle", 0
        )
        (perturbed,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], args["sigma"], options)
        return result + (args["cond_denoised"] - perturbed) * scale

    return post_cfg


class PerturbedAttentionGuidance(Node):
    """Perturbed-Attention Guidance: steer away from a prediction whose middle self-attention is identity."""

    category = "model_patches/unet"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        scale: Annotated[
            float, Input("Guidance strength (0: none).", min=0.0, max=100.0, step=0.01, round=0.01)
        ] = 3.0,
    ) -> Model:
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(_pag_post_cfg(scale))
        return patched
