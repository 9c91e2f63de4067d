"""The Canny edge detector, written for Loom in torch, with the conventions of kornia's `canny` (which
ComfyUI's Canny node calls): grey by 0.299/0.587/0.114, a 5×5 Gaussian blur of sigma 1 with mirrored
borders, the unnormalised Sobel gradient with repeated borders, non-maximum suppression along the
gradient rounded to 45° (ties kept on the left/upper pixel, as OpenCV does), and hysteresis through the
8 neighbours until nothing changes.

Canny, "A Computational Approach to Edge Detection", IEEE PAMI 8(6), 1986.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from engine.native import Image, Input, Node

GREY_WEIGHTS = (0.299, 0.587, 0.114)
EPS = 1e-6
# Neighbour k (dy, dx) for gradient directions k·45°; the last entry is the pixel itself.
NEIGHBOURS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 0))


def canny(images: Any, low: float, high: float) -> Any:
    """Edges (0 or 1) of a [B, C, H, W] batch with C = 1 or 3, as [B, 1, H, W]."""
    import torch

    grey = images
    if images.shape[1] == 3:
        # accumulated red, green, blue in this order, so ties in the suppression fall as in kornia
        red, green, blue = images.unbind(dim=1)
        grey = torch.addcmul(
            torch.addcmul(red * GREY_WEIGHTS[0], green, torch.tensor(GREY_WEIGHTS[1])),
            blue,
            torch.tensor(GREY_WEIGHTS[2]),
        )
        grey = grey.unsqueeze(1)
    gx, gy = _sobel(_blur(grey))
    magnitude = _suppress(gx, gy)
    edges = ((magnitude > low).to(grey.dtype) + (magnitude > high).to(grey.dtype)) * 0.5
    return _hysteresis(edges)


def _blur(grey: Any) -> Any:
    import torch
    import torch.nn.functional as F

    offsets = torch.arange(5, dtype=grey.dtype, device=grey.device) - 2
    gauss = torch.exp(-(offsets**2) / 2.0)
    gauss = gauss / gauss.sum()
    padded = F.pad(grey, (2, 2, 2, 2), mode="reflect")
    rows = F.conv2d(padded, gauss.view(1, 1, 1, 5))
    return F.conv2d(rows, gauss.view(1, 1, 5, 1))


def _sobel(grey: Any) -> tuple[Any, Any]:
    import torch
    import torch.nn.functional as F

    kernel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], dtype=grey.dtype)
    kernels = torch.stack([kernel_x, kernel_x.t()]).unsqueeze(1).to(grey.device)
    gradients = F.conv2d(F.pad(grey, (1, 1, 1, 1), mode="replicate"), kernels)
    return gradients[:, :1], gradients[:, 1:]


def _suppress(gx: Any, gy: Any) -> Any:
    """The gradient magnitude where a pixel is a maximum along its gradient direction, else 0. Beyond the
    image the magnitude is that of a flat pixel, so a flat pixel is never kept."""
    import torch
    import torch.nn.functional as F

    padded_x, padded_y = F.pad(gx, (1, 1, 1, 1)), F.pad(gy, (1, 1, 1, 1))
    padded = torch.sqrt(padded_x * padded_x + padded_y * padded_y + EPS)
    height, width = gx.shape[-2:]
    window = torch.stack(
        [padded[..., 1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width] for dy, dx in NEIGHBOURS]
    )
    magnitude = window[8]
    direction = (torch.nan_to_num(torch.atan2(gy, gx)) * (4 / math.pi)).round()
    forward, backward = (direction % 8).long(), ((direction + 4) % 8).long()
    keep = _beats(magnitude, window, forward) & _beats(magnitude, window, backward)
    keep = keep & (magnitude > padded[..., :1, :1])
    return magnitude * keep


def _beats(magnitude: Any, window: Any, direction: Any) -> Any:
    """Greater than the neighbour in `direction`; towards the right (0) and down (2) a tie also counts."""
    neighbour = window.gather(0, direction.unsqueeze(0)).squeeze(0)
    tie_allowed = (direction == 0) | (direction == 2)
    return (magnitude > neighbour) | (tie_allowed & (magnitude == neighbour))


def _hysteresis(edges: Any) -> Any:
    """Promote weak (0.5) pixels touching a strong (1) one, repeatedly; drop the weak ones left."""
    import torch
    import torch.nn.functional as F

    while True:
        strong = (edges == 1).to(edges.dtype)
        weak = (edges == 0.5).to(edges.dtype)
        touches = F.max_pool2d(F.pad(strong, (1, 1, 1, 1)), kernel_size=3, stride=1) > 0
        promoted = strong + weak * touches
        updated = promoted + (promoted == 0) * weak * 0.5
        if torch.equal(updated, edges):
            return (edges == 1).to(edges.dtype)
        edges = updated


class Canny(Node):
    """Find edges (white on black), e.g. as a ControlNet hint. The thresholds apply to the unnormalised
    gradient magnitude of the blurred grey image."""

    category = "image/preprocessors"

    def run(
        self,
        image: Annotated[Image, Input("The image.")],
        low_threshold: Annotated[
            float, Input("Weaker edges are kept only next to strong ones.", min=0.01, max=0.99, step=0.01)
        ] = 0.4,
        high_threshold: Annotated[
            float, Input("Edges above this are always kept.", min=0.01, max=0.99, step=0.01)
        ] = 0.8,
    ) -> Image:
        if low_threshold > high_threshold:
            raise ValueError(
                f"Canny: low_threshold {low_threshold} is above high_threshold {high_threshold}; swap them"
            )
        edges = canny(image.movedim(-1, 1)[:, :3], low_threshold, high_threshold)
        return edges.repeat(1, 3, 1, 1).movedim(1, -1)
