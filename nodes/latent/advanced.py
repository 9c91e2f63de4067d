"""Latent arithmetic: add, subtract, multiply and interpolate latents (ComfyUI's latent/advanced).

A second operand of another size is resized (bilinear, centre crop) to the first and repeated to its
batch size.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.diffusion.batching import repeat_to_batch
from engine.native import Input, Latent, Node
from nodes.image.basic import upscale

FIRST = Input("The first latents.")
SECOND = Input("The second latents; resized and repeated to match the first.")


def _matched(first: Any, second: Any) -> Any:
    if first.shape[1:] != second.shape[1:]:
        second = upscale(second, first.shape[-1], first.shape[-2], "bilinear", "center")
    return repeat_to_batch(second, first.shape[0])


def _with(latent: dict[str, Any], samples: Any) -> dict[str, Any]:
    out = dict(latent)
    out["samples"] = samples
    return out


class LatentAdd(Node):
    """samples1 + samples2."""

    category = "latent/advanced"

    def run(self, samples1: Annotated[Latent, FIRST], samples2: Annotated[Latent, SECOND]) -> Latent:
        first = samples1["samples"]
        return _with(samples1, first + _matched(first, samples2["samples"]))


class LatentSubtract(Node):
    """samples1 − samples2."""

    category = "latent/advanced"

    def run(self, samples1: Annotated[Latent, FIRST], samples2: Annotated[Latent, SECOND]) -> Latent:
        first = samples1["samples"]
        return _with(samples1, first - _matched(first, samples2["samples"]))


class LatentMultiply(Node):
    """samples · multiplier."""

    category = "latent/advanced"

    def run(
        self,
        samples: Annotated[Latent, Input("The latents.")],
        multiplier: Annotated[float, Input("The factor.", min=-10.0, max=10.0, step=0.01)] = 1.0,
    ) -> Latent:
        return _with(samples, samples["samples"] * multiplier)


class LatentInterpolate(Node):
    """Interpolate per pixel: the channel vectors' directions are mixed linearly and renormalised, their
    lengths mixed linearly, with weight `ratio` on samples1."""

    category = "latent/advanced"

    def run(
        self,
        samples1: Annotated[Latent, FIRST],
        samples2: Annotated[Latent, SECOND],
        ratio: Annotated[float, Input("Weight of samples1.", min=0.0, max=1.0, step=0.01)] = 1.0,
    ) -> Latent:
        import torch

        first = samples1["samples"]
        second = _matched(first, samples2["samples"])
        norm1 = torch.linalg.vector_norm(first, dim=1, keepdim=True)
        norm2 = torch.linalg.vector_norm(second, dim=1, keepdim=True)
        mixed = torch.nan_to_num(first / norm1) * ratio + torch.nan_to_num(second / norm2) * (1.0 - ratio)
        direction = torch.nan_to_num(mixed / torch.linalg.vector_norm(mixed, dim=1, keepdim=True))
        return _with(samples1, direction * (norm1 * ratio + norm2 * (1.0 - ratio)))
