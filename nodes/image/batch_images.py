"""BatchImagesNode (ComfyUI's newer `comfy_extras.nodes_post_processing`, not in 0.3.64): one IMAGE batch
from a growing list of image inputs.

ComfyUI declares the inputs as an Autogrow group: prompts name them `images.image0`, `images.image1`, …
(a workflow keeps the numbers it was edited with, gaps included). They are taken in the order of their
numbers; images of another size are resized to the first one's (bilinear, centre crop) and an RGB image
beside an RGBA one gets an opaque alpha channel, as ComfyUI does.
"""

from __future__ import annotations

from typing import Any

MAX_IMAGES = 50
PREFIX = "images.image"


def batch_images(images: list[Any]) -> Any:
    import torch

    from nodes.image.basic import upscale

    channels = max(image.shape[-1] for image in images)
    first = images[0]
    out = []
    for image in images:
        if image.shape[-1] < channels:
            image = torch.nn.functional.pad(image, (0, channels - image.shape[-1]), value=1.0)
        if image.shape[1:3] != first.shape[1:3]:
            image = upscale(image.movedim(-1, 1), first.shape[2], first.shape[1], "bilinear", "center")
            image = image.movedim(1, -1)
        out.append(image)
    return torch.cat(out, dim=0)


class BatchImagesNode:
    DESCRIPTION = "Join images into one batch, resized to the first image's size."
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"optional": {f"{PREFIX}{i}": ("IMAGE",) for i in range(MAX_IMAGES)}}

    def batch(self, **images: Any) -> tuple[Any]:
        unknown = sorted(name for name in images if not name.startswith(PREFIX))
        if unknown:
            raise ValueError(f"BatchImagesNode: unknown inputs {unknown}")
        given = [images[name] for name in sorted(images, key=lambda n: int(n.removeprefix(PREFIX)))]
        given = [image for image in given if image is not None]
        if not given:
            raise ValueError("BatchImagesNode: connect at least one image to inputs 'images.image0', …")
        return (batch_images(given),)


NODE_CLASS_MAPPINGS = {"BatchImagesNode": BatchImagesNode}
NODE_DISPLAY_NAME_MAPPINGS = {"BatchImagesNode": "Batch Images"}
