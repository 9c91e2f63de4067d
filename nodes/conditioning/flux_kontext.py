"""The rest of ComfyUI's Flux conditioning nodes (`comfy_extras.nodes_flux`): switching the distilled
guidance off, and Flux Kontext's image scaling and multi-reference placement. ReferenceLatent, which
gives Kontext its reference images, is in `nodes.conditioning.edit_models`."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Conditioning, Image, Input, Node

# The sizes Flux Kontext was trained at (about one megapixel each, both sides multiples of 16), as
# published by BFL and listed in ComfyUI's nodes_flux.
KONTEXT_RESOLUTIONS = (
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
)
# index_timestep_zero is newer than ComfyUI 0.3.64 (Qwen-Image Edit 2511 templates use it).
REFERENCE_METHODS = ("offset", "index", "uxo/uno", "index_timestep_zero")


def set_values(conditioning: list[Any], values: dict[str, Any]) -> list[Any]:
    """A copy of the conditioning with these options set on every entry."""
    return [[cond, {**options, **values}] for cond, options in conditioning]


class FluxDisableGuidance(Node):
    """Switch off the guidance embedding of Flux and Flux-like models: the model is run without its
    distilled guidance input at all (not with guidance 0)."""

    category = "advanced/conditioning/flux"

    def run(self, conditioning: Annotated[Conditioning, Input("The conditioning.")]) -> Conditioning:
        return set_values(conditioning, {"guidance": None})


def kontext_size(width: int, height: int) -> tuple[int, int]:
    """The Kontext training size whose aspect ratio is nearest the image's (the first on a tie)."""
    aspect = width / height
    return min(KONTEXT_RESOLUTIONS, key=lambda size: abs(aspect - size[0] / size[1]))


class FluxKontextImageScale(Node):
    """Resize an image to the Flux Kontext training size nearest its aspect ratio (lanczos, cropped at
    the centre to that ratio)."""

    category = "advanced/conditioning/flux"

    def run(self, image: Annotated[Image, Input("The image to resize.")]) -> Image:
        from nodes.image.basic import resize

        width, height = kontext_size(int(image.shape[2]), int(image.shape[1]))
        return resize(image, width, height, "lanczos", "center")


class FluxKontextMultiReferenceLatentMethod(Node):
    """How an edit model places its reference latents: `offset` (beside one another in one extra
    position plane), `index` (each in its own plane), `uxo/uno` (beside the image, in the image's plane)
    or `index_timestep_zero` (as index, the references modulated as at timestep 0: Qwen-Image Edit 2511;
    Loom's Flux refuses it at run time)."""

    category = "advanced/conditioning/flux"
    experimental = True

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning.")],
        reference_latents_method: Annotated[
            str, Input("Placement of the references.", choices=REFERENCE_METHODS)
        ],
    ) -> Conditioning:
        method = "uxo" if "uxo" in reference_latents_method or "uso" in reference_latents_method else None
        return set_values(conditioning, {"reference_latents_method": method or reference_latents_method})
