"""Qwen-Image 2.1 conditioning (ComfyUI's newer `comfy_extras.nodes_qwen`, not in 0.3.64):
TextEncodeQwenImage21 and QwenImage21Cache.

TextEncodeQwenImage21 encodes the prompt and the negative prompt with Qwen3-VL (CLIPLoader type qwen_image,
file qwen3vl_8b) and gives an empty latent: 64 channels at 1/16 of `resolution`² (of the first reference
image's size when there is one). Reference images (ComfyUI's Autogrow inputs `images.image_1` …
`images.image_16`, taken in their numbers' order) are resized to about `resolution`² in multiples of 32
(lanczos), seen by Qwen3-VL's vision tower (alpha over white) and, with a VAE, encoded (all four channels)
as `reference_latents`; the vision tokens are then dropped from the conditioning and each image's place
recorded as `image_slots` (engine.diffusion.qwen21_text). Without a VAE the vision tokens stay.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Input, Model, Node

MAX_IMAGES = 16
IMAGE_PREFIX = "images.image_"
LATENT_CHANNELS = 64
LATENT_RATIO = 16
NODE = "TextEncodeQwenImage21"


def _check_clip(clip: Any) -> None:
    from nodes.conditioning.text import NO_CLIP

    if clip is None:
        raise RuntimeError(NO_CLIP)
    if getattr(clip, "family", None) != "qwen_image21":
        raise ValueError(
            f"{NODE}: input 'clip' must be Qwen-Image 2.1's Qwen3-VL text encoder (CLIPLoader type "
            f"qwen_image with qwen3vl_8b); got a {getattr(clip, 'family', type(clip).__name__)} CLIP"
        )


def _encode(clip: Any, text: str, images: list[Any], keep_vision: bool) -> Any:
    """CONDITIONING of one prompt; with reference latents, the image slots on it."""
    from engine.diffusion.qwen21_text import kept

    tokens = clip.tokenize(text, images=images, prevent_empty_text=True)
    tokens["keep_vision"] = keep_vision
    conditioning = clip.encode_from_tokens_scheduled(tokens)
    if keep_vision:
        return conditioning
    _, slots = kept(tokens["qwen3vl_8b"][0], keep_vision)
    return [[cond, {**options, "image_slots": slots}] for cond, options in conditioning]


def _size(image: Any, resolution: int) -> tuple[int, int]:
    """(width, height) ComfyUI gives a reference: about resolution² pixels (or its own size) in
    multiples of 32, keeping the aspect ratio."""
    height, width = int(image.shape[1]), int(image.shape[2])
    if resolution > 0:
        ratio = width / height
        width = round(math.sqrt(resolution * resolution * ratio) / 32) * 32
        height = round(math.sqrt(resolution * resolution / ratio) / 32) * 32
    else:
        width, height = round(width / 32) * 32, round(height / 32) * 32
    return max(32, width), max(32, height)


def _references(
    named: dict[str, Any], vae: Any, resolution: int
) -> tuple[list[Any], list[Any], tuple[int, int] | None]:
    """(images for the vision tower, reference latents, the first image's size) in input order; the
    vision tower sees alpha over white, the VAE all four channels."""
    from nodes.image.basic import upscale

    vision, latents, first = [], [], None
    for name in sorted(named, key=lambda n: int(n.rsplit("_", 1)[1])):
        image = named[name][:1]
        width, height = _size(image, resolution)
        if (width, height) != (image.shape[2], image.shape[1]):
            image = upscale(image.movedim(-1, 1), width, height, "lanczos").movedim(1, -1)
        first = first or (width, height)
        rgb = image[..., :3]
        if image.shape[-1] > 3:
            rgb = rgb * image[..., 3:] + (1.0 - image[..., 3:])
        vision.append(rgb)
        if vae is not None:
            try:
                latents.append(vae.encode(image))
            except (RuntimeError, ValueError) as error:
                raise ValueError(f"{NODE}: the VAE could not encode input '{name}': {error}") from error
    return vision, latents, first


def _with_latents(conditioning: Any, latents: list[Any]) -> Any:
    return [[cond, {**options, "reference_latents": list(latents)}] for cond, options in conditioning]


def _check_vision(clip: Any, name: str) -> None:
    encoder = clip.encoders[clip.roles.index("qwen3vl_8b")]
    if getattr(encoder, "visual", None) is None:
        raise ValueError(
            f"{NODE}: input '{name}' needs Qwen3-VL's vision tower, but the text-encoder file has no "
            "`visual.` weights: load the complete qwen3vl_8b file with CLIPLoader (type qwen_image)"
        )


class TextEncodeQwenImage21:
    DESCRIPTION = (
        "Encode a prompt and a negative prompt for Qwen-Image 2.1, with reference images seen by the text "
        "encoder and (with a VAE) spliced into the sequence as latents; also the empty latent to sample."
    )
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "latent")
    FUNCTION = "encode"
    CATEGORY = "advanced/conditioning/qwen image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        text = {"multiline": True, "dynamicPrompts": True}
        images = {f"{IMAGE_PREFIX}{i}": ("IMAGE",) for i in range(1, MAX_IMAGES + 1)}
        return {
            "required": {"clip": ("CLIP",), "prompt": ("STRING", text), "negative_prompt": ("STRING", text)},
            "optional": {
                "vae": ("VAE",),
                "resolution": ("INT", {"default": 1024, "min": 0, "max": 4096, "step": 32}),
                **images,
            },
        }

    def encode(
        self,
        clip: Any,
        prompt: str,
        negative_prompt: str,
        vae: Any = None,
        resolution: int = 1024,
        **images: Any,
    ) -> tuple[Any, Any, dict[str, Any]]:
        import torch

        _check_clip(clip)
        unknown = sorted(n for n in images if not n.startswith(IMAGE_PREFIX))
        if unknown:
            raise ValueError(f"{NODE}: unknown inputs {unknown}")
        named = {n: image for n, image in images.items() if image is not None}
        for name in named:
            _check_vision(clip, name)
        vision, latents, first = _references(named, vae, resolution)
        keep_vision = not latents
        positive = _encode(clip, prompt, vision, keep_vision)
        negative = _encode(clip, negative_prompt, vision, keep_vision)
        if latents:
            positive, negative = (_with_latents(cond, latents) for cond in (positive, negative))
        width, height = first or (resolution or 1024, resolution or 1024)
        latent = torch.zeros((1, LATENT_CHANNELS, height // LATENT_RATIO, width // LATENT_RATIO))
        return positive, negative, {"samples": latent}


class QwenImage21Cache(Node):
    """Where Qwen-Image 2.1 keeps the text and reference keys and values it reuses across steps, and in
    what precision (ComfyUI's prefix cache). Loom recomputes them every step, which gives the same image
    as ComfyUI's lossless settings; the choice is recorded on the model for nodes that read it."""

    display_name = "Qwen Image 2.1 Cache"
    category = "advanced/conditioning/qwen image"

    def run(
        self,
        model: Annotated[Model, Input("A Qwen-Image 2.1 model.")],
        device: Annotated[
            str,
            Input(
                "Where the cache lives (off: recompute every step).", choices=("auto", "gpu", "cpu", "off")
            ),
        ] = "auto",
        dtype: Annotated[
            str, Input("Storage precision of the cache.", choices=("default", "int8", "int4"))
        ] = "default",
    ) -> Model:
        if getattr(model, "family", None) not in (None, "qwen_image21"):
            raise ValueError(
                f"QwenImage21Cache: input 'model' must be a Qwen-Image 2.1 model, got {model.family}"
            )
        patched = model.clone()
        options = patched.model_options.setdefault("transformer_options", {})
        options["qwen_image21_cache"] = {"device": device, "dtype": dtype}
        return patched


NODE_CLASS_MAPPINGS = {"TextEncodeQwenImage21": TextEncodeQwenImage21}
NODE_DISPLAY_NAME_MAPPINGS = {"TextEncodeQwenImage21": "Text Encode Qwen Image 2.1"}
