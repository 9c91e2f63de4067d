"""Text encoding and conditioning nodes (ComfyUI's names, inputs and semantics)."""

from __future__ import annotations

from typing import Annotated, Any

from engine.diffusion.clip import CLIP
from engine.native import Clip, Conditioning, Input, Node
from nodes.image.basic import MAX_RESOLUTION

NO_CLIP = (
    "clip input is invalid: None. If the clip is from a checkpoint loader node, "
    "the checkpoint does not contain a valid text encoder."
)


def prompt_text(description: str) -> Input:
    """A prompt box: multi-line, and ComfyUI's front end expands `{a|b}` choices in it before queueing."""
    return Input(description, multiline=True, extra={"dynamicPrompts": True})


def _encode(clip: CLIP | None, text: str, **options: Any) -> list[Any]:
    if clip is None:
        raise RuntimeError(NO_CLIP)
    return clip.encode_from_tokens_scheduled(clip.tokenize(text), add_dict=options)


def _sdxl_tokens(clip: CLIP, text_g: str, text_l: str) -> dict[str, Any]:
    """CLIP-G's windows from text_g, CLIP-L's from text_l, the shorter padded with empty windows."""
    tokens = clip.tokenize(text_g)
    if "l" not in tokens:
        return tokens
    tokens["l"] = clip.tokenize(text_l)["l"]
    empty = clip.tokenize("")
    while len(tokens["l"]) < len(tokens["g"]):
        tokens["l"] += empty["l"]
    while len(tokens["l"]) > len(tokens["g"]):
        tokens["g"] += empty["g"]
    return tokens


class CLIPTextEncode(Node):
    """Encode a prompt for the model. `(word)` strengthens a word by 1.1×, `(word:1.4)` sets its
    weight; prompts longer than 75 tokens are encoded in several windows."""

    display_name = "CLIP Text Encode (Prompt)"
    category = "conditioning"

    def run(
        self,
        text: Annotated[str, prompt_text("The prompt.")],
        clip: Annotated[Clip, Input("The text encoder.")],
    ) -> Conditioning:
        return _encode(clip, text)


SIZE = Input("Size hint in pixels that SDXL is conditioned on.", min=0, max=MAX_RESOLUTION)


class CLIPTextEncodeSDXL(Node):
    """Encode prompts for SDXL: one per text encoder, plus the size and crop hints it was trained with."""

    category = "advanced/conditioning"

    def run(  # keyword-only: ComfyUI's input order puts the required prompts after the size hints
        self,
        *,
        clip: Annotated[Clip, Input("The SDXL text encoders.")],
        width: Annotated[int, SIZE] = 1024,
        height: Annotated[int, SIZE] = 1024,
        crop_w: Annotated[int, SIZE] = 0,
        crop_h: Annotated[int, SIZE] = 0,
        target_width: Annotated[int, SIZE] = 1024,
        target_height: Annotated[int, SIZE] = 1024,
        text_g: Annotated[str, prompt_text("Prompt for the large (OpenCLIP G) encoder.")],
        text_l: Annotated[str, prompt_text("Prompt for the CLIP-L encoder.")],
    ) -> Conditioning:
        if clip is None:
            raise RuntimeError(NO_CLIP)
        return clip.encode_from_tokens_scheduled(
            _sdxl_tokens(clip, text_g, text_l),
            add_dict=dict(
                width=width,
                height=height,
                crop_w=crop_w,
                crop_h=crop_h,
                target_width=target_width,
                target_height=target_height,
            ),
        )


class ConditioningCombine(Node):
    """Use both conditionings: their predictions are averaged at every step."""

    display_name = "Conditioning (Combine)"
    category = "conditioning"

    def run(
        self,
        conditioning_1: Annotated[Conditioning, Input("The first conditioning.")],
        conditioning_2: Annotated[Conditioning, Input("The second conditioning.")],
    ) -> Conditioning:
        return conditioning_1 + conditioning_2


class ConditioningZeroOut(Node):
    """Replace a conditioning by zeros (keeping its shape and options)."""

    category = "advanced/conditioning"

    def run(self, conditioning: Annotated[Conditioning, Input("The conditioning to zero.")]) -> Conditioning:
        import torch

        out = []
        for cond, options in conditioning:
            options = dict(options)
            if options.get("pooled_output") is not None:
                options["pooled_output"] = torch.zeros_like(options["pooled_output"])
            out.append([torch.zeros_like(cond), options])
        return out


AREA = Input("In pixels; rounded down to multiples of 8.", min=0, max=MAX_RESOLUTION, step=8)


class ConditioningSetArea(Node):
    """Limit a conditioning to a rectangle of the image (with soft edges), e.g. to place an object."""

    display_name = "Conditioning (Set Area)"
    category = "conditioning"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to place.")],
        width: Annotated[int, Input("Width of the area in pixels.", min=64, max=MAX_RESOLUTION, step=8)] = 64,
        height: Annotated[
            int, Input("Height of the area in pixels.", min=64, max=MAX_RESOLUTION, step=8)
        ] = 64,
        x: Annotated[int, AREA] = 0,
        y: Annotated[int, AREA] = 0,
        strength: Annotated[
            float, Input("Weight of this area's prediction.", min=0.0, max=10.0, step=0.01)
        ] = 1.0,
    ) -> Conditioning:
        area = (height // 8, width // 8, y // 8, x // 8)
        return [
            [cond, {**options, "area": area, "strength": strength, "set_area_to_bounds": False}]
            for cond, options in conditioning
        ]
