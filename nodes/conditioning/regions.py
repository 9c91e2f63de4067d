"""Conditioning nodes that mix conditionings and say where and when each applies (ComfyUI's semantics).

The options they set ("area", "strength", "mask", "mask_strength", "set_area_to_bounds", "start_percent",
"end_percent") are honoured by Loom's sampler (engine/diffusion/guidance.py).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from engine.native import Conditioning, Input, Mask, Node

log = logging.getLogger(__name__)

FRACTION = Input("A fraction of the image's size.", min=0, max=1.0, step=0.01)
STRENGTH = Input("Weight of this conditioning's prediction.", min=0.0, max=10.0, step=0.01)
MASK_AREAS = ("default", "mask bounds")


def with_options(conditioning: list[Any], **options: Any) -> list[Any]:
    """A copy of the conditioning with these options set on every entry."""
    return [[cond, {**extra, **options}] for cond, extra in conditioning]


def _first(conditioning: list[Any], node: str) -> tuple[Any, dict[str, Any]]:
    if len(conditioning) > 1:
        log.warning("%s: conditioning_from has %d entries; only the first is used", node, len(conditioning))
    return conditioning[0][0], conditioning[0][1]


class ConditioningAverage(Node):
    """Blend each entry of conditioning_to with the first of conditioning_from:
    to · strength + from · (1 − strength), token by token (the shorter one padded with zeros)."""

    category = "conditioning"

    def run(
        self,
        *,
        conditioning_to: Annotated[Conditioning, Input("The conditioning weighted by the strength.")],
        conditioning_from: Annotated[Conditioning, Input("The conditioning blended in.")],
        conditioning_to_strength: Annotated[
            float, Input("Weight of conditioning_to.", min=0.0, max=1.0, step=0.01)
        ] = 1.0,
    ) -> Conditioning:
        import torch

        cond_from, options_from = _first(conditioning_from, "ConditioningAverage")
        pooled_from = options_from.get("pooled_output")
        weight = conditioning_to_strength
        out = []
        for cond_to, options_to in conditioning_to:
            source = cond_from[:, : cond_to.shape[1]]
            if source.shape[1] < cond_to.shape[1]:
                padding = torch.zeros((1, cond_to.shape[1] - source.shape[1], cond_to.shape[2]))
                source = torch.cat([source, padding.to(source)], dim=1)
            options = dict(options_to)
            pooled_to = options_to.get("pooled_output", pooled_from)
            if pooled_from is not None and pooled_to is not None:
                options["pooled_output"] = pooled_to * weight + pooled_from * (1.0 - weight)
            elif pooled_from is not None:
                options["pooled_output"] = pooled_from
            out.append([cond_to * weight + source * (1.0 - weight), options])
        return out


class ConditioningConcat(Node):
    """Append the first entry of conditioning_from's tokens to each entry of conditioning_to."""

    display_name = "Conditioning (Concat)"
    category = "conditioning"

    def run(
        self,
        *,
        conditioning_to: Annotated[Conditioning, Input("The conditioning appended to.")],
        conditioning_from: Annotated[Conditioning, Input("The conditioning whose tokens are appended.")],
    ) -> Conditioning:
        import torch

        cond_from, _ = _first(conditioning_from, "ConditioningConcat")
        return [
            [torch.cat((cond, cond_from.to(cond)), 1), dict(options)] for cond, options in conditioning_to
        ]


class ConditioningSetMask(Node):
    """Limit a conditioning to a mask (resized to the latent). "mask bounds" also crops the prediction to
    the mask's bounding box, which is faster and gives the masked region the model's full attention."""

    display_name = "Conditioning (Set Mask)"
    category = "conditioning"

    def run(
        self,
        *,
        conditioning: Annotated[Conditioning, Input("The conditioning to place.")],
        mask: Annotated[Mask, Input("Where it applies (1) and where not (0).")],
        strength: Annotated[float, STRENGTH] = 1.0,
        set_cond_area: Annotated[
            str, Input("Predict on the whole image or the mask's bounds.", choices=MASK_AREAS)
        ],
    ) -> Conditioning:
        mask = mask.unsqueeze(0) if mask.ndim < 3 else mask
        return with_options(
            conditioning, mask=mask, set_area_to_bounds=set_cond_area != "default", mask_strength=strength
        )


class ConditioningSetAreaPercentage(Node):
    """Limit a conditioning to a rectangle given as fractions of the image (soft edges inside it)."""

    display_name = "Conditioning (Set Area with Percentage)"
    category = "conditioning"

    def run(
        self,
        *,
        conditioning: Annotated[Conditioning, Input("The conditioning to place.")],
        width: Annotated[float, FRACTION] = 1.0,
        height: Annotated[float, FRACTION] = 1.0,
        x: Annotated[float, FRACTION] = 0,
        y: Annotated[float, FRACTION] = 0,
        strength: Annotated[float, STRENGTH] = 1.0,
    ) -> Conditioning:
        return with_options(
            conditioning,
            area=("percentage", height, width, y, x),
            strength=strength,
            set_area_to_bounds=False,
        )


class ConditioningSetAreaStrength(Node):
    """Set how strongly a conditioning's prediction weighs against the others it overlaps."""

    category = "conditioning"

    def run(
        self,
        *,
        conditioning: Annotated[Conditioning, Input("The conditioning.")],
        strength: Annotated[float, STRENGTH] = 1.0,
    ) -> Conditioning:
        return with_options(conditioning, strength=strength)


class ConditioningSetTimestepRange(Node):
    """Apply a conditioning only during part of sampling: from `start` to `end`, as fractions of the
    schedule (0 is the first, noisiest step)."""

    category = "advanced/conditioning"

    def run(
        self,
        *,
        conditioning: Annotated[Conditioning, Input("The conditioning.")],
        start: Annotated[
            float, Input("Fraction of sampling where it starts.", min=0.0, max=1.0, step=0.001)
        ] = 0.0,
        end: Annotated[
            float, Input("Fraction of sampling where it ends.", min=0.0, max=1.0, step=0.001)
        ] = 1.0,
    ) -> Conditioning:
        return with_options(conditioning, start_percent=start, end_percent=end)
