"""Text-encoder merging as weight patches: clip2's weights (with its own patches) are added to a clone of
clip1 through get_key_patches/add_patches, the mechanism LoRAs use, and applied only while it encodes.
Position ids and CLIP's logit scale are left as clip1 has them, as ComfyUI does."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Clip, Input, Node
from nodes.model_patches.merging import MERGING

SKIPPED_SUFFIXES = (".position_ids", ".logit_scale")


def merged_clip(clip1: Any, clip2: Any, strength_patch: float, strength_model: float) -> Any:
    """clip1 * strength_model + clip2 * strength_patch, weight by weight (weights clip1 lacks are skipped)."""
    merged = clip1.clone()
    for key, patches in clip2.get_key_patches().items():
        if key.endswith(SKIPPED_SUFFIXES):
            continue
        merged.add_patches({key: patches}, strength_patch, strength_model)
    return merged


class CLIPMergeSimple(Node):
    """Blend two text encoders' weights: ratio 1 keeps clip1, 0 gives clip2."""

    category = MERGING

    def run(
        self,
        clip1: Annotated[Clip, Input("The first text encoder (weight ratio).")],
        clip2: Annotated[Clip, Input("The second text encoder (weight 1 - ratio).")],
        ratio: Annotated[float, Input("Share of clip1.", min=0.0, max=1.0, step=0.01)] = 1.0,
    ) -> Clip:
        return merged_clip(clip1, clip2, 1.0 - ratio, ratio)


class CLIPMergeSubtract(Node):
    """(clip1 - clip2) * multiplier, e.g. to extract what a fine-tune changed in the text encoder."""

    category = MERGING

    def run(
        self,
        clip1: Annotated[Clip, Input("The text encoder subtracted from.")],
        clip2: Annotated[Clip, Input("The text encoder subtracted.")],
        multiplier: Annotated[float, Input("Scale of the difference.", min=-10.0, max=10.0, step=0.01)] = 1.0,
    ) -> Clip:
        return merged_clip(clip1, clip2, -multiplier, multiplier)


class CLIPMergeAdd(Node):
    """clip1 + clip2, e.g. to add a difference made by CLIPMergeSubtract back onto a text encoder."""

    category = MERGING

    def run(
        self,
        clip1: Annotated[Clip, Input("The first text encoder.")],
        clip2: Annotated[Clip, Input("The text encoder added to it.")],
    ) -> Clip:
        return merged_clip(clip1, clip2, 1.0, 1.0)
