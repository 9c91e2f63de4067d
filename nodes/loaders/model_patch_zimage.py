"""ZImageFunControlnet (newer ComfyUI, `comfy_extras/nodes_model_patch.py`): alibaba-pai's Z-Image Fun
ControlNet on a Z-Image model, with a control image and, for the 2.x files, an inpaint image and mask.
QwenImageDiffsynthControlnet given such a patch does the same (the templates use it)."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Image, Input, Mask, Model, Node, Vae
from nodes.loaders.model_patch import ModelPatch


class ZImageFunControlnet(Node):
    """Steer a Z-Image model through a Z-Image Fun ControlNet (canny, HED, depth, pose, MLSD…): the control
    image, and with the 2.x files an image to inpaint and a mask of what to repaint."""

    category = "advanced/loaders/zimage"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("A Z-Image model.")],
        model_patch: Annotated[ModelPatch, Input("A Z-Image Fun ControlNet (ModelPatchLoader).")],
        vae: Annotated[Vae, Input("Z-Image's VAE (ae), to encode the images.")],
        strength: Annotated[
            float, Input("How strongly the control steers the image.", min=-10.0, max=10.0, step=0.01)
        ] = 1.0,
        image: Annotated[Image | None, Input("The control image.")] = None,
        inpaint_image: Annotated[Image | None, Input("2.x files: the image to inpaint.")] = None,
        mask: Annotated[Mask | None, Input("2.x files: where to repaint (1).")] = None,
    ) -> Model:
        return apply_zimage_fun(
            "ZImageFunControlnet", model, model_patch, vae, strength, image, inpaint_image, mask
        )


def apply_zimage_fun(
    node: str,
    model: Any,
    patch: Any,
    vae: Any,
    strength: float,
    image: Any,
    inpaint_image: Any,
    mask: Any,
) -> Any:
    """A clone of `model` with the control at its noise-refiner and main-layer patch points."""
    from engine.diffusion.zimage_fun_control import LATENT_CHANNELS, ZImageFunControl

    _check(node, model, patch, vae)
    if image is None and (inpaint_image is None or patch.layout.in_channels == LATENT_CHANNELS):
        raise ValueError(
            f"{node}: input 'image' is required"
            + ("" if patch.layout.in_channels == LATENT_CHANNELS else " (or an 'inpaint_image')")
            + f" for {patch.name!r}"
        )
    keep = None
    if mask is not None:  # what is kept, one channel (ComfyUI averages a mask's channels)
        keep = 1.0 - (mask if mask.ndim == 4 else mask.reshape(-1, 1, *mask.shape[-2:])).mean(
            dim=1, keepdim=True
        )
    control = ZImageFunControl(
        patch,
        vae,
        None if image is None else image[..., :3],
        strength,
        None if inpaint_image is None else inpaint_image[..., :3],
        keep,
    )
    patched = model.clone()
    patched.set_model_noise_refiner_patch(control)
    patched.set_model_double_block_patch(control)
    return patched


def _check(node: str, model: Any, patch: Any, vae: Any) -> None:
    """The patch, the model and the VAE must fit together: say which input does not."""
    if getattr(patch, "kind", None) != "zimage_fun_controlnet":
        raise ValueError(
            f"{node}: input 'model_patch' must be a Z-Image Fun ControlNet; "
            f"got {getattr(patch, 'kind', type(patch).__name__)}"
        )
    if getattr(model, "family", None) != "zimage":
        raise ValueError(
            f"{node}: input 'model' must be a Z-Image model for the Z-Image Fun ControlNet "
            f"{patch.name!r}; got {getattr(model, 'family', '?')}"
        )
    config = model.unet.config
    head_dim = config.dim // config.n_heads
    if patch.layout.width != config.dim or patch.layout.head_dim != head_dim:
        raise ValueError(
            f"{node}: input 'model_patch' {patch.name!r} is {patch.layout.width} wide with "
            f"{patch.layout.head_dim}-channel heads, but the model is {config.dim} wide with "
            f"{head_dim}-channel heads"
        )
    if getattr(vae, "latent_channels", None) != 16:
        raise ValueError(
            f"{node}: input 'vae' must be Z-Image's VAE (16 latent channels); "
            f"got {getattr(vae, 'latent_channels', '?')}"
        )
