"""VAE nodes: latents to pixels and back, whole or in tiles, and inpainting preparation."""

from __future__ import annotations

from typing import Annotated, Any

from engine import threads
from engine.diffusion.devices import manager
from engine.diffusion.handles import VaeHandle
from engine.native import Image, Input, Latent, Mask, Node, Vae

NO_VAE = (
    "vae input is invalid: None. If the vae is from a checkpoint loader node, the checkpoint contains no VAE."
)


def decode(vae: VaeHandle | None, samples: Any) -> Any:
    """Raw latents [B, C, h, w] → IMAGE [B, H, W, 3] in 0..1."""
    import torch

    if vae is None:
        raise RuntimeError(NO_VAE)
    device = manager().use(vae.vae)
    # Most of the decoder runs at pixel resolution: count the work there.
    work = threads.work_of(vae.vae, samples.shape[0] * samples.shape[-2] * samples.shape[-1] * 64)
    with torch.no_grad(), threads.limited(work):
        pixels = vae.vae.decode(samples.to(device, next(vae.vae.parameters()).dtype)).sample
    return ((pixels.float() + 1.0) / 2.0).clamp(0.0, 1.0).movedim(1, -1).cpu()


def encode(vae: VaeHandle | None, pixels: Any) -> Any:
    """IMAGE [B, H, W, C] (cropped to multiples of 8) → raw latents, the posterior's mean."""
    import torch

    if vae is None:
        raise RuntimeError(NO_VAE)
    pixels = _crop8(pixels)[..., :3]
    device = manager().use(vae.vae)
    work = threads.work_of(vae.vae, pixels.shape[0] * pixels.shape[1] * pixels.shape[2])
    with torch.no_grad(), threads.limited(work):
        x = (pixels.movedim(-1, 1) * 2.0 - 1.0).to(device, next(vae.vae.parameters()).dtype)
        return vae.vae.encode(x).latent_dist.mode().float().cpu()


def _crop8(pixels: Any) -> Any:
    height, width = (pixels.shape[1] // 8) * 8, (pixels.shape[2] // 8) * 8
    top, left = (pixels.shape[1] % 8) // 2, (pixels.shape[2] % 8) // 2
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
        pixels, mask = _crop8(pixels).clone(), _crop8(mask.movedim(1, -1)).movedim(-1, 1)
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
    """Decode large latents tile by tile to save memory; tiles overlap and are blended."""

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
        return decode_tiled(vae, samples["samples"], tile_size // 8, min(overlap, tile_size // 4) // 8)


def decode_tiled(vae: VaeHandle | None, latents: Any, tile: int, overlap: int) -> Any:
    """Decode overlapping latent tiles and blend them with linear ramps over the overlaps."""
    import torch

    _, _, height, width = latents.shape
    if tile >= height and tile >= width:
        return decode(vae, latents)
    stride = max(tile - overlap, 1)
    tiles = [(top, left) for top in _starts(height, tile, stride) for left in _starts(width, tile, stride)]
    parts = [decode(vae, latents[:, :, top : top + tile, left : left + tile]) for top, left in tiles]
    scale = parts[0].shape[1] // min(tile, height)
    out = torch.zeros((latents.shape[0], height * scale, width * scale, parts[0].shape[-1]))
    weight = torch.zeros((1, height * scale, width * scale, 1))
    for (top, left), part in zip(tiles, parts, strict=True):
        ramp = _ramp(part.shape[1], part.shape[2], overlap * scale, top > 0, left > 0)
        y, x = top * scale, left * scale
        out[:, y : y + part.shape[1], x : x + part.shape[2]] += part * ramp
        weight[:, y : y + part.shape[1], x : x + part.shape[2]] += ramp
    return out / weight


def _starts(size: int, tile: int, stride: int) -> list[int]:
    starts = list(range(0, max(size - tile, 0) + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(height: int, width: int, overlap: int, fade_top: bool, fade_left: bool) -> Any:
    import torch

    ramp = torch.ones((1, height, width, 1))
    for i in range(min(overlap, height, width)):
        value = (i + 1) / (overlap + 1)
        if fade_top:
            ramp[:, i] *= value
        if fade_left:
            ramp[:, :, i] *= value
    return ramp


class VAEEncodeTiled(Node):
    """Encode a large image tile by tile to save memory; the tiles' latents overlap and are blended."""

    display_name = "VAE Encode (Tiled)"
    category = "_for_testing"

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
        return {"samples": encode_tiled(vae, pixels, tile_size, min(overlap, tile_size // 4))}


def encode_tiled(vae: VaeHandle | None, pixels: Any, tile: int, overlap: int) -> Any:
    """Encode overlapping pixel tiles (sizes in pixels, multiples of 8) and blend their latents with
    linear ramps over the overlaps, the mirror of decode_tiled."""
    import torch

    pixels = _crop8(pixels)[..., :3]
    height, width = pixels.shape[1] // 8, pixels.shape[2] // 8
    tile, overlap = tile // 8, overlap // 8
    if tile >= height and tile >= width:
        return encode(vae, pixels)
    stride = max(tile - overlap, 1)
    tiles = [(top, left) for top in _starts(height, tile, stride) for left in _starts(width, tile, stride)]
    parts = [
        encode(vae, pixels[:, top * 8 : (top + tile) * 8, left * 8 : (left + tile) * 8])
        for top, left in tiles
    ]
    # latent pixels per 8 image pixels (1 for SD's f=8 VAE)
    scale = parts[0].shape[2] / min(tile, height)
    out = torch.zeros((pixels.shape[0], parts[0].shape[1], round(height * scale), round(width * scale)))
    weight = torch.zeros((1, 1, out.shape[2], out.shape[3]))
    for (top, left), part in zip(tiles, parts, strict=True):
        ramp = _ramp(part.shape[2], part.shape[3], round(overlap * scale), top > 0, left > 0).movedim(-1, 1)
        y, x = round(top * scale), round(left * scale)
        out[:, :, y : y + part.shape[2], x : x + part.shape[3]] += part * ramp
        weight[:, :, y : y + part.shape[2], x : x + part.shape[3]] += ramp
    return out / weight
