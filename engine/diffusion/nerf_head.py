"""Chroma Radiance's pixel decoder: a per-patch "NeRF-style" MLP whose weights are made from the transformer.

Chroma Radiance (lodestone-rock's `flow`, ComfyUI's `comfy/ldm/chroma_radiance`) works on pixels: 16×16 RGB
patches are the transformer's tokens, and each token's final hidden state drives a small MLP that turns
the noisy pixels of its patch into the prediction. Per patch:

1. every pixel gets its RGB values and a 2-D cosine (DCT-like) code of its place in the patch
   (`max_freqs`² features, down-weighted by 1 / (1 + fx·fy)), projected to `hidden` channels;
2. `depth` gated-MLP blocks whose three matrices are *generated* from the patch's token (`param_generator`,
   one Linear to 3·hidden²·ratio numbers), each matrix L2-normalised over its input dimension; the block
   normalises its input (RMSNorm) and adds its output to it;
3. the patches are put back into an image [B, hidden, H, W], RMS-normalised per pixel and mapped to RGB by
   a Linear (older files) or a 3×3 convolution (`nerf_final_layer_conv`).
Patches are independent until step 3, so `tile_size` patches at a time give the same result with less
memory (ComfyUI's nerf_tile_size).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

RMS_EPS = 1e-6


class ScaledRMSNorm(nn.Module):
    """RMSNorm over the last dimension with a learnt `scale` (the reference files' name for the weight)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.rms_norm(x, (x.shape[-1],), self.scale.to(x.dtype), RMS_EPS)


class PixelEmbedder(nn.Module):
    """RGB of each pixel of a patch plus its cosine position code, projected to the head's width. Runs in
    float32 whatever the model's dtype (ComfyUI builds it so: `nerf_embedder_dtype`)."""

    def __init__(self, channels: int, width: int, max_freqs: int) -> None:
        super().__init__()
        self.max_freqs = max_freqs
        self.embedder = nn.Sequential(nn.Linear(channels + max_freqs**2, width))

    def position_code(self, patch: int, device: Any) -> torch.Tensor:
        """[patch², max_freqs²]: cos(π·fx·x)·cos(π·fy·y) / (1 + fx·fy) for x, y evenly in [0, 1], pixels
        row by row and frequencies fx-major."""
        grid = torch.linspace(0, 1, patch, device=device, dtype=torch.float32)
        freqs = torch.arange(self.max_freqs, device=device, dtype=torch.float32)
        rows, cols = torch.meshgrid(grid, grid, indexing="ij")
        along_x = torch.cos(cols.reshape(-1, 1, 1) * freqs[None, :, None] * math.pi)
        along_y = torch.cos(rows.reshape(-1, 1, 1) * freqs[None, None, :] * math.pi)
        weight = 1.0 / (1.0 + freqs[:, None] * freqs[None, :])
        return (along_x * along_y * weight).reshape(patch * patch, self.max_freqs**2)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [N, patch², C] → [N, patch², width] in the pixels' dtype."""
        count, area, _ = pixels.shape
        code = self.position_code(math.isqrt(area), pixels.device).expand(count, -1, -1)
        projection: nn.Linear = self.embedder[0]  # type: ignore[assignment]
        inputs = torch.cat((pixels.float(), code), dim=-1).to(projection.weight.dtype)
        return projection(inputs).to(pixels.dtype)


class GeneratedGLUBlock(nn.Module):
    """x + W3·(silu(W1·n) ⊙ W2·n), n = RMSNorm(x), with W1, W2, W3 generated from the patch's token."""

    def __init__(self, token_width: int, width: int, mlp_ratio: int) -> None:
        super().__init__()
        self.width, self.inner = width, width * mlp_ratio
        self.param_generator = nn.Linear(token_width, 3 * width * self.inner)
        self.norm = ScaledRMSNorm(width)

    def forward(self, x: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
        count = x.shape[0]
        gate, value, out = self.param_generator(token).chunk(3, dim=-1)
        gate = nn.functional.normalize(gate.view(count, self.width, self.inner), dim=-2)
        value = nn.functional.normalize(value.view(count, self.width, self.inner), dim=-2)
        out = nn.functional.normalize(out.view(count, self.inner, self.width), dim=-2)
        normed = self.norm(x)
        hidden = nn.functional.silu(torch.bmm(normed, gate)) * torch.bmm(normed, value)
        return x + torch.bmm(hidden, out)


class LinearOut(nn.Module):
    """Older files' final layer: per-pixel RMSNorm and Linear to RGB."""

    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.norm = ScaledRMSNorm(width)
        self.linear = nn.Linear(width, channels)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.linear(self.norm(image.movedim(1, -1))).movedim(-1, 1)


class ConvOut(nn.Module):
    """Newer files' final layer: per-pixel RMSNorm and a 3×3 convolution to RGB."""

    def __init__(self, width: int, channels: int) -> None:
        super().__init__()
        self.norm = ScaledRMSNorm(width)
        self.conv = nn.Conv2d(width, channels, kernel_size=3, padding=1)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.conv(self.norm(image.movedim(1, -1)).movedim(-1, 1))


class NerfHead(nn.Module):
    """The pixel decoder: embedder, generated-MLP blocks and the final layer ("linear" or "conv")."""

    def __init__(
        self,
        token_width: int,
        channels: int = 3,
        patch: int = 16,
        width: int = 64,
        mlp_ratio: int = 4,
        depth: int = 4,
        max_freqs: int = 8,
        final: str = "conv",
    ) -> None:
        super().__init__()
        if final not in ("linear", "conv"):
            raise ValueError(f"unknown Chroma Radiance final layer {final!r} (linear or conv)")
        self.patch, self.channels = patch, channels
        self.embedder = PixelEmbedder(channels, width, max_freqs)
        self.blocks = nn.ModuleList(GeneratedGLUBlock(token_width, width, mlp_ratio) for _ in range(depth))
        self.final: nn.Module = LinearOut(width, channels) if final == "linear" else ConvOut(width, channels)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor, tile_size: int = 0) -> torch.Tensor:
        """image [B, C, H, W] (whole patches) and the transformer's image tokens [B, patches, token_width]
        → the prediction [B, C, H, W]; `tile_size` > 0 runs that many patches' MLPs at a time."""
        batch, channels, height, width = image.shape
        patches = tokens.shape[1]
        area = self.patch * self.patch
        # [B, C·P², patches] → one row of P² pixels (RGB each) per patch, batch-major as the tokens.
        pixels = nn.functional.unfold(image, self.patch, stride=self.patch).transpose(1, 2)
        pixels = pixels.reshape(batch * patches, channels, area).transpose(1, 2)
        flat_tokens = tokens.reshape(batch * patches, -1)
        step = tile_size if 0 < tile_size < patches else batch * patches
        decoded = torch.cat(
            [
                self._decode(pixels[start : start + step], flat_tokens[start : start + step])
                for start in range(0, batch * patches, step)
            ]
        )
        # [B·patches, P², hidden] → [B, hidden·P², patches] → folded back into the image.
        decoded = decoded.transpose(1, 2).reshape(batch, patches, -1).transpose(1, 2)
        folded = nn.functional.fold(decoded, (height, width), self.patch, stride=self.patch)
        return self.final(folded)

    def _decode(self, pixels: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        hidden = self.embedder(pixels)
        for block in self.blocks:
            hidden = block(hidden, tokens)
        return hidden
