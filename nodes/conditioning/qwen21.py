"""Qwen-Image 2.1 conditioning (ComfyUI's newer `comfy_extras.nodes_qwen`, not in 0.3.64):
TextEncodeQwenImage21 and QwenImage21Cache.

TextEncodeQwenImage21 encodes the prompt and the negative prompt with Qwen3-VL (CLIPLoader type qwen_image,
file qwen3vl_8b) and gives an empty latent: 64 channels at 1/16 of `resolution`² (of the first reference
image's size when there is one). Reference images (ComfyUI's Autogrow inputs `images.image_1` …
`images.image_16`) need Qwen3-VL's vision tower, which Loom does not run yet: such a prompt is refused
with a message naming the input.
"""

from __future__ import annotations

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


def _encode(clip: Any, text: str) -> Any:
    tokens = clip.tokenize(text, prevent_empty_text=True)
    return clip.encode_from_tokens_scheduled(tokens)


class TextEncodeQwenImage21:
    DESCRIPTION = (
        "Encode a prompt and a negative prompt for Qwen-Image 2.1 and make the empty latent to sample."
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
        given = sorted(
            (n for n, image in images.items() if image is not None), key=lambda n: int(n.rsplit("_", 1)[1])
        )
        unknown = [n for n in given if not n.startswith(IMAGE_PREFIX)]
        if unknown:
            raise ValueError(f"{NODE}: unknown inputs {unknown}")
        if given:
            raise ValueError(
                f"{NODE}: input '{given[0]}' is a reference image, which needs Qwen3-VL's vision tower; "
                "Loom does not run it yet (text-to-image works without images)"
            )
        side = resolution or 1024
        latent = torch.zeros((1, LATENT_CHANNELS, side // LATENT_RATIO, side // LATENT_RATIO))
        return _encode(clip, prompt), _encode(clip, negative_prompt), {"samples": latent}


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
