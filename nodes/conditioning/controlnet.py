"""Applying ControlNets and T2I-Adapters to conditioning (ComfyUI's conditioning/controlnet nodes).

The control object travels on each conditioning entry under "control"; applying a second one
chains it after the first (`set_previous_controlnet`), and the sampler adds every object's residuals
at each step inside its start/end percent range. Strength 0 returns the conditioning untouched.
"""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from engine.native import Conditioning, Image, Input, Mask, Node, Vae
from nodes.loaders.controlnet import ControlNetType

STRENGTH = Input("How strongly the control steers the image.", min=0.0, max=10.0, step=0.01)
START = Input("Fraction of the sampling at which the control starts acting.", min=0.0, max=1.0, step=0.001)
END = Input("Fraction of the sampling at which the control stops acting.", min=0.0, max=1.0, step=0.001)
# ComfyUI's SetUnionControlNetType choices, with the Union ControlNet's type numbers.
UNION_CONTROLNET_TYPES = {
    "openpose": 0,
    "depth": 1,
    "hed/pidi/scribble/ted": 2,
    "canny/lineart/anime_lineart/mlsd": 3,
    "normal": 4,
    "segment": 5,
    "tile": 6,
    "repaint": 7,
}


class ApplyOutputs(NamedTuple):
    positive: Conditioning
    negative: Conditioning


def apply_controlnet(
    positive: list[Any],
    negative: list[Any],
    control_net: Any,
    image: Any,
    strength: float,
    start_percent: float,
    end_percent: float,
    vae: Any = None,
    extra_concat: list[Any] | None = None,
) -> tuple[list[Any], list[Any]]:
    """ControlNetApplyAdvanced: one copy of the control per distinct previous control, shared by the
    positive and negative entries that had it, so cond and uncond batch together."""
    if strength == 0:
        return positive, negative
    hint = image.movedim(-1, 1)
    copies: dict[int, Any] = {}
    out = []
    for conditioning in (positive, negative):
        entries = []
        for cond, options in conditioning:
            options = dict(options)
            previous = options.get("control")
            if id(previous) not in copies:
                control = control_net.copy().set_cond_hint(
                    hint, strength, (start_percent, end_percent), vae=vae, extra_concat=extra_concat or []
                )
                control.set_previous_controlnet(previous)
                copies[id(previous)] = control
            options["control"] = copies[id(previous)]
            options["control_apply_to_uncond"] = False
            entries.append([cond, options])
        out.append(entries)
    return out[0], out[1]


class ControlNetApplyAdvanced(Node):
    """Apply a ControlNet or T2I-Adapter to the positive and negative conditioning, between two points
    of the sampling. The VAE is for ControlNets that work on latents."""

    display_name = "Apply ControlNet"
    category = "conditioning/controlnet"

    def run(
        self,
        positive: Annotated[Conditioning, Input("The positive conditioning.")],
        negative: Annotated[Conditioning, Input("The negative conditioning.")],
        control_net: Annotated[ControlNetType, Input("The ControlNet or T2I-Adapter.")],
        image: Annotated[Image, Input("The hint image (edges, depth, pose...).")],
        strength: Annotated[float, STRENGTH] = 1.0,
        start_percent: Annotated[float, START] = 0.0,
        end_percent: Annotated[float, END] = 1.0,
        vae: Annotated[Vae | None, Input("A VAE, for ControlNets that take latents.")] = None,
    ) -> ApplyOutputs:
        return ApplyOutputs(
            *apply_controlnet(
                positive, negative, control_net, image, strength, start_percent, end_percent, vae
            )
        )


class ControlNetApply(Node):
    """Deprecated (use Apply ControlNet): apply a ControlNet to one conditioning; the sampler also
    applies it to the negative side's entries."""

    display_name = "Apply ControlNet (OLD)"
    category = "conditioning/controlnet"
    deprecated = True

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning.")],
        control_net: Annotated[ControlNetType, Input("The ControlNet or T2I-Adapter.")],
        image: Annotated[Image, Input("The hint image.")],
        strength: Annotated[float, STRENGTH] = 1.0,
    ) -> Conditioning:
        if strength == 0:
            return conditioning
        hint = image.movedim(-1, 1)
        out = []
        for cond, options in conditioning:
            options = dict(options)
            control = control_net.copy().set_cond_hint(hint, strength)
            if "control" in options:
                control.set_previous_controlnet(options["control"])
            options["control"] = control
            options["control_apply_to_uncond"] = True
            out.append([cond, options])
        return out


class SetUnionControlNetType(Node):
    """Tell a ControlNet Union which kind of hint it gets ("auto" lets it work it out)."""

    category = "conditioning/controlnet"

    def run(
        self,
        control_net: Annotated[ControlNetType, Input("The ControlNet Union.")],
        type: Annotated[str, Input("The kind of hint image.", choices=["auto", *UNION_CONTROLNET_TYPES])],
    ) -> ControlNetType:
        control_net = control_net.copy()
        number = UNION_CONTROLNET_TYPES.get(type, -1)
        control_net.set_extra_arg("control_type", [number] if number >= 0 else [])
        return control_net


class ControlNetInpaintingAliMamaApply(Node):
    """Apply an inpainting ControlNet: for one that takes the mask as an extra input, the masked area
    of the image is blanked and the mask passed along; otherwise as Apply ControlNet."""

    category = "conditioning/controlnet"

    def run(
        self,
        positive: Annotated[Conditioning, Input("The positive conditioning.")],
        negative: Annotated[Conditioning, Input("The negative conditioning.")],
        control_net: Annotated[ControlNetType, Input("The inpainting ControlNet.")],
        vae: Annotated[Vae, Input("The VAE.")],
        image: Annotated[Image, Input("The image to inpaint.")],
        mask: Annotated[Mask, Input("1 where to regenerate.")],
        strength: Annotated[float, STRENGTH] = 1.0,
        start_percent: Annotated[float, START] = 0.0,
        end_percent: Annotated[float, END] = 1.0,
    ) -> ApplyOutputs:
        from engine.diffusion.controlnet import fit_image

        extra_concat = []
        if control_net.concat_mask:
            mask = 1.0 - mask.reshape((-1, 1, mask.shape[-2], mask.shape[-1]))
            keep = fit_image(mask, image.shape[2], image.shape[1], "bilinear").round()
            image = image * keep.movedim(1, -1).repeat(1, 1, 1, image.shape[3])
            extra_concat = [mask]
        return ApplyOutputs(
            *apply_controlnet(
                positive,
                negative,
                control_net,
                image,
                strength,
                start_percent,
                end_percent,
                vae,
                extra_concat,
            )
        )
