"""Image prompts: CLIPVisionEncode, unCLIPConditioning and StyleModelApply (ComfyUI's names, inputs and
semantics), and GLIGENTextBoxApply."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Clip, Conditioning, Image, Input, Node, Socket
from nodes.conditioning.text import prompt_text
from nodes.image.basic import MAX_RESOLUTION
from nodes.loaders.vision import ClipVision, GligenModel, StyleModel

ClipVisionOutput = Annotated[Any, Socket("CLIP_VISION_OUTPUT")]


class CLIPVisionEncode(Node):
    """Encode an image with a CLIP vision model. "center" resizes the short side to the model's input size
    and crops the middle; "none" squeezes the whole image to a square."""

    display_name = "CLIP Vision Encode"
    category = "conditioning"

    def run(
        self,
        clip_vision: Annotated[ClipVision, Input("The CLIP vision model.")],
        image: Annotated[Image, Input("The image to encode.")],
        crop: Annotated[
            str, Input("How to fit the image to the model's square input.", choices=["center", "none"])
        ],
    ) -> ClipVisionOutput:
        if clip_vision is None:
            raise ValueError("CLIPVisionEncode: clip_vision is None (the loader found no CLIP vision model)")
        return clip_vision.encode_image(image, crop=crop == "center")


class unCLIPConditioning(Node):
    """Add an image embedding to the conditioning of an unCLIP model (SD2.1 unCLIP) or of SDXL ("revision",
    with a CLIP-G vision model). Several add up; noise_augmentation loosens how closely the image is
    followed."""

    display_name = "unCLIPConditioning"
    category = "conditioning"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to add the image to.")],
        clip_vision_output: Annotated[ClipVisionOutput, Input("The encoded image.")],
        strength: Annotated[
            float, Input("How strongly the image guides.", min=-10.0, max=10.0, step=0.01)
        ] = 1.0,
        noise_augmentation: Annotated[
            float,
            Input("Noise added to the image embedding (0: none, 1: all noise).", min=0.0, max=1.0, step=0.01),
        ] = 0.0,
    ) -> Conditioning:
        if strength == 0:
            return conditioning
        item = {
            "clip_vision_output": clip_vision_output,
            "strength": strength,
            "noise_augmentation": noise_augmentation,
        }
        out = []
        for cond, options in conditioning:
            options = dict(options)
            options["unclip_conditioning"] = [*options.get("unclip_conditioning", []), item]
            out.append([cond, options])
        return out


class StyleModelApply(Node):
    """Append a T2I style model's tokens, read from an encoded image, to every prompt of the conditioning.
    "multiply" scales the tokens by strength; "attn_bias" keeps them and biases attention to them by
    log(strength) instead."""

    display_name = "Apply Style Model"
    category = "conditioning/style_model"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to extend.")],
        style_model: Annotated[StyleModel, Input("The style model.")],
        clip_vision_output: Annotated[ClipVisionOutput, Input("The encoded image (CLIP-ViT-L/14).")],
        strength: Annotated[
            float, Input("How strongly the style guides.", min=0.0, max=10.0, step=0.001)
        ] = 1.0,
        strength_type: Annotated[
            str, Input("How strength acts on the style tokens.", choices=["multiply", "attn_bias"])
        ] = "multiply",
    ) -> Conditioning:
        from engine.diffusion.style_model import append_style_tokens

        try:
            tokens = style_model.get_cond(clip_vision_output)
        except ValueError as exc:
            raise ValueError(f"StyleModelApply: clip_vision_output: {exc}") from exc
        return append_style_tokens(conditioning, tokens, strength, strength_type)


class GLIGENTextBoxApply(Node):
    """Place the object a text describes in a box (pixels) with a GLIGEN model; chain several for several
    boxes."""

    display_name = "GLIGENTextBoxApply"
    category = "conditioning/gligen"

    def run(
        self,
        conditioning_to: Annotated[Conditioning, Input("The conditioning to add the box to.")],
        clip: Annotated[Clip, Input("The text encoder.")],
        gligen_textbox_model: Annotated[GligenModel, Input("The GLIGEN model.")],
        text: Annotated[str, prompt_text("What goes in the box.")],
        width: Annotated[int, Input("Box width in pixels.", min=8, max=MAX_RESOLUTION, step=8)] = 64,
        height: Annotated[int, Input("Box height in pixels.", min=8, max=MAX_RESOLUTION, step=8)] = 64,
        x: Annotated[int, Input("Box left edge in pixels.", min=0, max=MAX_RESOLUTION, step=8)] = 0,
        y: Annotated[int, Input("Box top edge in pixels.", min=0, max=MAX_RESOLUTION, step=8)] = 0,
    ) -> Conditioning:
        if clip is None:
            raise ValueError("GLIGENTextBoxApply: clip is None (the checkpoint has no text encoder)")
        _, pooled = clip.encode_from_tokens(clip.tokenize(text), return_pooled="unprojected")
        key_dim = gligen_textbox_model.model.key_dim
        if pooled.shape[-1] != key_dim:
            raise ValueError(
                f"GLIGENTextBoxApply: clip: its pooled output is {pooled.shape[-1]} wide, but the GLIGEN "
                f"model reads {key_dim} (GLIGEN models are made for one text encoder, SD1.x's CLIP-L)"
            )
        box = (pooled, height // 8, width // 8, y // 8, x // 8)
        out = []
        for cond, options in conditioning_to:
            options = dict(options)
            previous = list(options["gligen"][2]) if "gligen" in options else []
            options["gligen"] = ("position", gligen_textbox_model, [*previous, box])
            out.append([cond, options])
        return out
