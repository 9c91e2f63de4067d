"""Qwen-Image Edit conditioning: TextEncodeQwenImageEdit and TextEncodeQwenImageEditPlus (ComfyUI's
`comfy_extras.nodes_qwen`, 0.3.64).

An image goes into the prompt through Qwen2.5-VL's vision tower (loaded from the `qwen_2.5_vl_7b` file)
and, with a VAE, onto the conditioning as a reference latent (`reference_latents`), which Qwen-Image's
diffusion model appends to the image tokens (engine.diffusion.flow_qwen.QwenImage). Sizes follow
ComfyUI: the single-image node scales its image to about 1 MP (area resampling) for both; the Plus node
gives the vision tower about 384² and the VAE about 1 MP in multiples of 8.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Clip, Conditioning, Image, Input, Node, Vae

REFERENCE_PIXELS = 1024 * 1024
VISION_PIXELS_PLUS = 384 * 384


class TextEncodeQwenImageEdit(Node):
    """Encode an edit instruction and the image to edit for Qwen-Image Edit; with a VAE the image also
    becomes the reference latent the diffusion model sees."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("Qwen-Image's text encoder (CLIPLoader type qwen_image).")],
        prompt: Annotated[str, Input("The instruction.", multiline=True, extra={"dynamicPrompts": True})],
        vae: Annotated[Vae | None, Input("Encodes the image as a reference latent.")] = None,
        image: Annotated[Image | None, Input("The image to edit.")] = None,
    ) -> Conditioning:
        _check_clip("TextEncodeQwenImageEdit", clip)
        images: list[Any] = []
        reference = None
        if image is not None:
            _check_vision("TextEncodeQwenImageEdit", "image", clip)
            width, height = _scaled(image, REFERENCE_PIXELS, 1)
            scaled = _resized(image, width, height)[:, :, :, :3]
            images = [scaled]
            if vae is not None:
                reference = _encode(vae, scaled, "TextEncodeQwenImageEdit", "image")
        conditioning = clip.encode_from_tokens_scheduled(clip.tokenize(prompt, images=images))
        return _with_references(conditioning, [] if reference is None else [reference])


class TextEncodeQwenImageEditPlus(Node):
    """Encode an edit instruction with up to three images for Qwen-Image Edit 2509 ("Picture 1: …" in
    the prompt); with a VAE each image also becomes a reference latent."""

    category = "advanced/conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("Qwen-Image's text encoder (CLIPLoader type qwen_image).")],
        prompt: Annotated[str, Input("The instruction.", multiline=True, extra={"dynamicPrompts": True})],
        vae: Annotated[Vae | None, Input("Encodes the images as reference latents.")] = None,
        image1: Annotated[Image | None, Input("First image.")] = None,
        image2: Annotated[Image | None, Input("Second image.")] = None,
        image3: Annotated[Image | None, Input("Third image.")] = None,
    ) -> Conditioning:
        _check_clip("TextEncodeQwenImageEditPlus", clip)
        vision: list[Any] = []
        references: list[Any] = []
        picture_prompt = ""
        for number, image in enumerate((image1, image2, image3), start=1):
            if image is None:
                continue
            _check_vision("TextEncodeQwenImageEditPlus", f"image{number}", clip)
            vision.append(_resized(image, *_scaled(image, VISION_PIXELS_PLUS, 1)))
            if vae is not None:
                scaled = _resized(image, *_scaled(image, REFERENCE_PIXELS, 8))[:, :, :, :3]
                references.append(_encode(vae, scaled, "TextEncodeQwenImageEditPlus", f"image{number}"))
            picture_prompt += f"Picture {number}: <|vision_start|><|image_pad|><|vision_end|>"
        tokens = clip.tokenize(picture_prompt + prompt, images=vision, llama_template=EDIT_TEMPLATE)
        conditioning = clip.encode_from_tokens_scheduled(tokens)
        return _with_references(conditioning, references)


# ComfyUI's edit system prompt with the user's turn left open (the Plus node writes the vision slots).
EDIT_TEMPLATE = (
    "<|im_start|>system\nDescribe the key features of the input image (color, shape, size, texture, "
    "objects, background), then explain how the user's text instruction should alter or modify the image. "
    "Generate a new image that meets the user's requirements while maintaining consistency with the "
    "original input where appropriate.<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)


def _check_clip(node: str, clip: Any) -> None:
    from nodes.conditioning.text import NO_CLIP

    if clip is None:
        raise RuntimeError(NO_CLIP)
    if clip.family != "qwen_image":
        raise ValueError(
            f"{node}: input 'clip' must be Qwen-Image's text encoder (CLIPLoader type qwen_image); "
            f"got a {clip.family} CLIP"
        )


def _scaled(image: Any, pixels: int, multiple: int) -> tuple[int, int]:
    """(width, height) of `image` [B, H, W, C] scaled to about `pixels`, rounded to `multiple`."""
    height, width = image.shape[1], image.shape[2]
    scale = math.sqrt(pixels / (width * height))
    if multiple == 1:
        return round(width * scale), round(height * scale)
    return round(width * scale / multiple) * multiple, round(height * scale / multiple) * multiple


def _resized(image: Any, width: int, height: int) -> Any:
    from nodes.image.basic import upscale

    return upscale(image.movedim(-1, 1), width, height, "area").movedim(1, -1)


def _encode(vae: Any, pixels: Any, node: str, name: str) -> Any:
    try:
        return vae.encode(pixels)
    except (RuntimeError, ValueError) as error:
        raise ValueError(f"{node}: the VAE could not encode input '{name}': {error}") from error


def _check_vision(node: str, name: str, clip: Any) -> None:
    """A file without Qwen2.5-VL's vision tower cannot take an image: say so naming the input."""
    encoder = clip.encoders[clip.roles.index("qwen25_7b")] if "qwen25_7b" in clip.roles else None
    if getattr(encoder, "visual", None) is None:
        raise ValueError(
            f"{node}: input '{name}' needs Qwen2.5-VL's vision tower, but the text-encoder file has no "
            "`visual.` weights: load the complete qwen_2.5_vl_7b file with CLIPLoader (type qwen_image)"
        )


def _with_references(conditioning: list[Any], references: list[Any]) -> list[Any]:
    """Each entry's `reference_latents` extended by `references` (ComfyUI's conditioning_set_values
    with append)."""
    if not references:
        return conditioning
    out = []
    for cond, options in conditioning:
        updated = dict(options)
        updated["reference_latents"] = list(updated.get("reference_latents") or []) + references
        out.append([cond, updated])
    return out
