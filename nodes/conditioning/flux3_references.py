"""ReferenceMultiLatent (newer ComfyUI, Flux 3's edit templates): reference images for an edit model.

Each connected image (inputs `images.image0`, `images.image1`, … as ComfyUI's Autogrow group names them,
taken in the order of their numbers) is scaled to about `megapixels` with sides a multiple of 16 (mode
"resize"; "none" keeps its size, cropped to the multiple), encoded by the VAE and added as a reference
latent to the positive conditioning and, when connected, the negative one (Flux 3's reference pipeline
gives both the references). The first reference's size gives the empty latent the edit is sampled in.
The n-th reference is `<ref_image_n-1>` in the prompt.
"""

from __future__ import annotations

import math
from typing import Any

MAX_IMAGES = 16
PREFIX = "images.image"
MODES = ("resize", "none")
MULTIPLE = 16


def _sized(image: Any, mode: str, megapixels: float) -> Any:
    from nodes.image.basic import upscale

    height, width = image.shape[1], image.shape[2]
    if mode == "resize":
        scale = math.sqrt(megapixels * 1024 * 1024 / (width * height))
        width, height = round(width * scale), round(height * scale)
    width = max(MULTIPLE, width // MULTIPLE * MULTIPLE)
    height = max(MULTIPLE, height // MULTIPLE * MULTIPLE)
    if (height, width) == tuple(image.shape[1:3]):
        return image
    return upscale(image.movedim(-1, 1), width, height, "area", "center").movedim(1, -1)


def _with_references(conditioning: list[Any], latents: list[Any]) -> list[Any]:
    return [
        [cond, {**options, "reference_latents": [*options.get("reference_latents", []), *latents]}]
        for cond, options in conditioning
    ]


class ReferenceMultiLatent:
    DESCRIPTION = (
        "Add reference images to an edit's conditioning (positive and negative): each is scaled to about "
        "this many megapixels, VAE-encoded and attached; the empty latent takes the first one's size."
    )
    RETURN_TYPES = ("CONDITIONING", "CONDITIONING", "LATENT")
    RETURN_NAMES = ("positive", "negative", "empty_latent")
    FUNCTION = "attach"
    CATEGORY = "advanced/conditioning/edit_models"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        images = {f"{PREFIX}{i}": ("IMAGE",) for i in range(MAX_IMAGES)}
        return {
            "required": {
                "positive": ("CONDITIONING",),
                "mode": (list(MODES), {"default": "resize"}),
                "megapixels": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 16.0, "step": 0.01}),
            },
            "optional": {"negative": ("CONDITIONING",), "vae": ("VAE",), **images},
        }

    def attach(
        self,
        positive: list[Any],
        mode: str,
        megapixels: float,
        negative: list[Any] | None = None,
        vae: Any = None,
        **images: Any,
    ) -> tuple[list[Any], list[Any] | None, dict[str, Any]]:
        from nodes.latent.vae import encode

        node = "ReferenceMultiLatent"
        unknown = sorted(name for name in images if not name.startswith(PREFIX))
        if unknown:
            raise ValueError(f"{node}: unknown inputs {unknown}")
        if mode not in MODES:
            raise ValueError(f"{node}: input 'mode' must be one of {list(MODES)}, got {mode!r}")
        ordered = sorted(
            (n for n in images if images[n] is not None), key=lambda n: int(n.removeprefix(PREFIX))
        )
        if not ordered:
            raise ValueError(
                f"{node}: connect at least one image to 'images.image0', … (its size sets the latent)"
            )
        if vae is None:
            raise ValueError(f"{node}: input 'vae' is needed to encode the reference images")
        latents = []
        for name in ordered:
            for frame in images[name]:
                latents.append(encode(vae, _sized(frame[None], mode, megapixels)))
        empty = {"samples": latents[0][:1].new_zeros(latents[0][:1].shape)}
        out_negative = None if negative is None else _with_references(negative, latents)
        return _with_references(positive, latents), out_negative, empty


NODE_CLASS_MAPPINGS = {"ReferenceMultiLatent": ReferenceMultiLatent}
NODE_DISPLAY_NAME_MAPPINGS = {"ReferenceMultiLatent": "Set Reference Multi Latent"}
