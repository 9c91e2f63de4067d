"""Conditioning for models that take an image beside the noise: inpainting models (9 input channels:
noise, mask, masked image) and InstructPix2Pix (8: noise, image)."""

from __future__ import annotations

from typing import Annotated, Any, NamedTuple

from engine.native import Conditioning, Image, Input, Latent, Mask, Node, Vae
from nodes.conditioning.regions import with_options
from nodes.latent.vae import encode


class InpaintOutputs(NamedTuple):
    positive: Conditioning
    negative: Conditioning
    latent: Latent


def _crop8(pixels: Any, mask: Any | None = None) -> tuple[Any, Any]:
    """Crop [B, H, W, C] (and a [B, 1, H, W] mask) to multiples of 8, centred as VAE encoding does."""
    height, width = (pixels.shape[1] // 8) * 8, (pixels.shape[2] // 8) * 8
    top, left = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
    pixels = pixels[:, top : top + height, left : left + width]
    if mask is not None:
        mask = mask[:, :, top : top + height, left : left + width]
    return pixels, mask


class InpaintModelConditioning(Node):
    """Prepare inpainting: the latent of the whole image to sample from, and for the model the latent of
    the image with the masked area greyed out plus the mask. Optionally the mask also limits sampling."""

    category = "conditioning/inpaint"

    def run(
        self,
        positive: Annotated[Conditioning, Input("The positive conditioning.")],
        negative: Annotated[Conditioning, Input("The negative conditioning.")],
        vae: Annotated[Vae, Input("The VAE.")],
        pixels: Annotated[Image, Input("The image to inpaint.")],
        mask: Annotated[Mask, Input("1 where to regenerate.")],
        noise_mask: Annotated[
            bool, Input("Also set the mask as the latent's noise mask, so only the masked area is sampled.")
        ] = True,
    ) -> InpaintOutputs:
        import torch.nn.functional as F

        mask = F.interpolate(
            mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float(),
            size=pixels.shape[1:3],
            mode="bilinear",
        )
        masked, mask = _crop8(pixels.clone(), mask)
        keep = (1.0 - mask.round()).movedim(1, -1)
        masked[..., :3] = (masked[..., :3] - 0.5) * keep + 0.5
        concat_latent = encode(vae, masked)
        latent: dict[str, Any] = {"samples": encode(vae, pixels)}
        if noise_mask:
            latent["noise_mask"] = mask
        options = {"concat_latent_image": concat_latent, "concat_mask": mask}
        return InpaintOutputs(with_options(positive, **options), with_options(negative, **options), latent)


class InstructPixToPixConditioning(Node):
    """Condition an InstructPix2Pix model on an image; sampling starts from an empty latent of its size."""

    category = "conditioning/instructpix2pix"

    def run(
        self,
        positive: Annotated[Conditioning, Input("The positive conditioning (the edit instruction).")],
        negative: Annotated[Conditioning, Input("The negative conditioning.")],
        vae: Annotated[Vae, Input("The VAE.")],
        pixels: Annotated[Image, Input("The image to edit.")],
    ) -> InpaintOutputs:
        import torch

        image, _ = _crop8(pixels)
        concat_latent = encode(vae, image)
        latent = {"samples": torch.zeros_like(concat_latent)}
        return InpaintOutputs(
            with_options(positive, concat_latent_image=concat_latent),
            with_options(negative, concat_latent_image=concat_latent),
            latent,
        )
