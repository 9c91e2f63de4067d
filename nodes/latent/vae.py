"""VAE nodes: latents to pixels and back, whole or in tiles, and inpainting preparation."""

from __future__ import annotations

from typing import Annotated, Any

from engine.diffusion.vae import VAE
from engine.native import Image, Input, Latent, Mask, Node, Vae

NO_VAE = (
    "vae input is invalid: None. If the vae is from a checkpoint loader node, the checkpoint contains no VAE."
)


def decode(vae: VAE | None, samples: Any) -> Any:
    """Raw latents [B, C, h, w] → IMAGE [B, H, W, 3] in 0..1."""
    if vae is None:
        raise RuntimeError(NO_VAE)
    return vae.decode(samples)


def encode(vae: VAE | None, pixels: Any) -> Any:
    """IMAGE [B, H, W, C] (cropped to the VAE's multiple) → raw latents, the posterior's mean."""
    if vae is None:
        raise RuntimeError(NO_VAE)
    return vae.encode(pixels[..., :3])


def _crop(pixels: Any, ratio: int) -> Any:
    height, width = (pixels.shape[1] // ratio) * ratio, (pixels.shape[2] // ratio) * ratio
    top, left = (pixels.shape[1] % ratio) // 2, (pixels.shape[2] % ratio) // 2
    return pixels[:, top : top + height, left : left + width]


class VAEDecode(Node):
    """Turn latents into an image."""

    display_name = "VAE Decode"
    category = "latent"

    def run(
        self,
        samples: Annotated[Latent, Input("The latents to decode.")],
        vae: Annotated[Vae, Input("The VAE.")],
    ) -> Image:
        return decode(vae, samples["samples"])


class VAEEncode(Node):
    """Turn an image into latents (for image-to-image: sample them with denoise below 1)."""

    display_name = "VAE Encode"
    category = "latent"

    def run(
        self,
        pixels: Annotated[Image, Input("The image to encode.")],
        vae: Annotated[Vae, Input("The VAE.")],
    ) -> Latent:
        return {"samples": encode(vae, pixels)}


class VAEEncodeForInpaint(Node):
    """Encode an image for inpainting: the masked area is greyed out and becomes the noise mask."""

    display_name = "VAE Encode (for Inpainting)"
    category = "latent/inpaint"

    def run(
        self,
        pixels: Annotated[Image, Input("The image.")],
        vae: Annotated[Vae, Input("The VAE.")],
        mask: Annotated[Mask, Input("1 where to regenerate.")],
        grow_mask_by: Annotated[int, Input("Grow the mask by this many pixels.", min=0, max=64, step=1)] = 6,
    ) -> Latent:
        import torch
        import torch.nn.functional as F

        size = pixels.shape[1:3]
        mask = F.interpolate(
            mask.reshape(-1, 1, mask.shape[-2], mask.shape[-1]).float(), size=size, mode="bilinear"
        )
        if vae is None:
            raise RuntimeError(NO_VAE)
        ratio = vae.spacial_compression_encode()
        pixels, mask = _crop(pixels, ratio).clone(), _crop(mask.movedim(1, -1), ratio).movedim(-1, 1)
        if grow_mask_by > 0:
            kernel = torch.ones((1, 1, grow_mask_by, grow_mask_by))
            padding = grow_mask_by // 2
            grown = torch.clamp(F.conv2d(mask.round(), kernel, padding=padding), 0, 1)[
                ..., : mask.shape[2], : mask.shape[3]
            ]
        else:
            grown = mask.round()
        keep = (1.0 - mask.round()).movedim(1, -1)
        pixels[..., :3] = (pixels[..., :3] - 0.5) * keep + 0.5
        return {"samples": encode(vae, pixels), "noise_mask": grown}


class VAEDecodeTiled(Node):
    """Decode large latents tile by tile to save memory; three overlapping tilings are averaged."""

    display_name = "VAE Decode (Tiled)"
    category = "_for_testing"

    def run(
        self,
        samples: Annotated[Latent, Input("The latents to decode.")],
        vae: Annotated[Vae, Input("The VAE.")],
        tile_size: Annotated[int, Input("Tile size in pixels.", min=64, max=4096, step=32)] = 512,
        overlap: Annotated[
            int, Input("Overlap of neighbouring tiles in pixels.", min=0, max=4096, step=32)
        ] = 64,
        temporal_size: Annotated[
            int, Input("Frames per tile (video models only).", min=8, max=4096, step=4)
        ] = 64,
        temporal_overlap: Annotated[
            int, Input("Frame overlap (video models only).", min=4, max=4096, step=4)
        ] = 8,
    ) -> Image:
        if vae is None:
            raise RuntimeError(NO_VAE)
        if tile_size < overlap * 4:
            overlap = tile_size // 4
        compression = vae.spacial_compression_decode()
        tile = tile_size // compression
        return vae.decode_tiled(samples["samples"], tile_x=tile, tile_y=tile, overlap=overlap // compression)


class VAEEncodeTiled(Node):
    """Encode a large image tile by tile to save memory; the tiles' latents overlap and are blended."""

    display_name = "VAE Encode (Tiled)"
    category = "_for_testing"

    @classmethod
    def validate(cls, tile_size: int | None = 512, overlap: int | None = 64) -> bool | str:
        # ComfyUI also tiles at half the tile size, so the overlap must stay below that.
        if tile_size is not None and overlap is not None and overlap * 2 >= tile_size:
            return f"overlap ({overlap}) must be less than half of tile_size ({tile_size})"
        return True

    def run(
        self,
        pixels: Annotated[Image, Input("The image to encode.")],
        vae: Annotated[Vae, Input("The VAE.")],
        tile_size: Annotated[int, Input("Tile size in pixels.", min=64, max=4096, step=64)] = 512,
        overlap: Annotated[
            int, Input("Overlap of neighbouring tiles in pixels.", min=0, max=4096, step=32)
        ] = 64,
        temporal_size: Annotated[
            int, Input("Frames per tile (video models only).", min=8, max=4096, step=4)
        ] = 64,
        temporal_overlap: Annotated[
            int, Input("Frame overlap (video models only).", min=4, max=4096, step=4)
        ] = 8,
    ) -> Latent:
        if vae is None:
            raise RuntimeError(NO_VAE)
        samples = vae.encode_tiled(pixels[..., :3], tile_x=tile_size, tile_y=tile_size, overlap=overlap)
        return {"samples": samples}
