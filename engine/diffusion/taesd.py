"""TAESD, the Tiny AutoEncoder for Stable Diffusion, and the latent previews it draws.

The networks have ComfyUI's layer order (comfy/taesd/taesd.py), so the published decoder files
(`taesd_decoder`, `taesdxl_decoder`, `taesd3_decoder`, `taef1_decoder` in the vae_approx model
folder) load into them unchanged. A prompt whose preview method is taesd gets the decoder's image
of each step's denoised latent; when the family's decoder file is missing it gets the cheap
latent → RGB projection instead, with one warning per missing file.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class _Conv2d(nn.Conv2d):
    """A convolution that skips torch's weight initialisation: every weight comes from a file."""

    def reset_parameters(self) -> None:
        return None


def conv(n_in: int, n_out: int, **kwargs: Any) -> nn.Module:
    """A 3x3 convolution keeping the spatial size (stride and bias may be passed)."""
    return _Conv2d(n_in, n_out, 3, padding=1, **kwargs)


class Clamp(nn.Module):
    """Soft clamp of latents to (-3, 3)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x / 3) * 3


class Block(nn.Module):
    """Three 3x3 convolutions with ReLUs between, plus a skip (1x1 when channels change), then ReLU."""

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            conv(n_in, n_out), nn.ReLU(), conv(n_out, n_out), nn.ReLU(), conv(n_out, n_out)
        )
        self.skip = _Conv2d(n_in, n_out, 1, bias=False) if n_in != n_out else nn.Identity()
        self.fuse = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fuse(self.conv(x) + self.skip(x))


def _stage(*layers: nn.Module) -> list[nn.Module]:
    return [*layers, Block(64, 64), Block(64, 64), Block(64, 64)]


def Encoder(latent_channels: int = 4) -> nn.Sequential:
    """Image (3 channels) to latent at 1/8 size: three stride-2 downsamplings."""
    down = [layer for _ in range(3) for layer in _stage(conv(64, 64, stride=2, bias=False))]
    return nn.Sequential(conv(3, 64), Block(64, 64), *down, conv(64, latent_channels))


def Decoder(latent_channels: int = 4) -> nn.Sequential:
    """Latent to image at 8x size: three nearest-neighbour 2x upsamplings. Its output is in [0, 1]
    for real decoder weights (ComfyUI maps it to [-1, 1] and back before drawing)."""
    up = [
        layer
        for _ in range(3)
        for layer in [
            Block(64, 64),
            Block(64, 64),
            Block(64, 64),
            nn.Upsample(scale_factor=2),
            conv(64, 64, bias=False),
        ]
    ]
    return nn.Sequential(Clamp(), conv(latent_channels, 64), nn.ReLU(), *up, Block(64, 64), conv(64, 3))


_decoders: dict[tuple[Path, int], nn.Sequential] = {}
_warned: set[str] = set()
_lock = threading.Lock()


def load_decoder(path: Path, latent_channels: int) -> nn.Sequential:
    """The decoder in a file, loaded once per file onto the CPU (previews stay off the model's device)."""
    from safetensors.torch import load_file

    key = (path.resolve(), latent_channels)
    with _lock:
        if key not in _decoders:
            decoder = Decoder(latent_channels)
            if path.suffix == ".safetensors":
                state = load_file(str(path), device="cpu")
            else:
                state = torch.load(path, map_location="cpu", weights_only=True)
            decoder.load_state_dict(state)
            _decoders[key] = decoder.eval().requires_grad_(False)
        return _decoders[key]


def decoder_file(latent_format: Any) -> Path | None:
    """The vae_approx file for a latent format's TAESD decoder (the first whose name starts with
    `taesd_decoder_name`, as ComfyUI picks it), or None with one warning naming what is missing."""
    from engine import folders

    name = getattr(latent_format, "taesd_decoder_name", None)
    if name is None:
        return None
    found = folders.current()
    match = next((f for f in found.model_files("vae_approx") if f.startswith(name)), None)
    if match is not None:
        return found.model_path("vae_approx", match)
    if name not in _warned:
        _warned.add(name)
        where = ", ".join(map(str, found.models.get("vae_approx", []))) or "no vae_approx folder"
        log.warning("TAESD previews asked for, but %s is not in %s; using latent2rgb previews", name, where)
    return None


def taesd_jpeg(decoder: nn.Module, x0: torch.Tensor, max_side: int = 512) -> bytes:
    """A JPEG of the decoder's image of the first latent of a model-space batch."""
    from PIL import Image

    with torch.inference_mode():
        rgb = decoder(x0[:1].detach().float().cpu())[0].movedim(0, -1)
    array = (rgb.clamp(0, 1) * 255).to(torch.uint8).numpy()
    image = Image.fromarray(array)
    image.thumbnail((max_side, max_side))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def preview_jpeg(latent_format: Any, x0: torch.Tensor, method: str, max_side: int = 512) -> bytes:
    """A preview of a step's denoised latent by the prompt's method: TAESD when asked for and its
    decoder file is there, else the latent format's latent → RGB projection. A latent with frames
    (Qwen-Image Layered's image and layers) shows its first frame."""
    if x0.ndim == 5:
        x0 = x0[:, :, 0]
    if method == "taesd":
        path = decoder_file(latent_format)
        if path is not None:
            return taesd_jpeg(load_decoder(path, latent_format.latent_channels), x0, max_side)
    jpeg: bytes = latent_format.preview_jpeg(x0, max_side)
    return jpeg
