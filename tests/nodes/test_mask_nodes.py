"""Mask nodes on small tensors, through the registry and executor, against values worked out by hand."""

from __future__ import annotations

import pytest
import torch

from engine.executor import Executor
from tests.nodes.harness import call


def grid(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor([rows], dtype=torch.float32)


def test_solid_invert_threshold(executor: Executor) -> None:
    (solid,) = call(executor, "SolidMask", value=0.25, width=3, height=2)
    assert solid.shape == (1, 2, 3) and torch.all(solid == 0.25)
    (inverted,) = call(executor, "InvertMask", mask=solid)
    assert torch.all(inverted == 0.75)
    (hard,) = call(executor, "ThresholdMask", mask=grid([[0.2, 0.5, 0.7]]), value=0.5)
    assert hard.tolist() == [[[0.0, 0.0, 1.0]]]


def test_crop_mask_clips_at_the_edges(executor: Executor) -> None:
    mask = torch.arange(16, dtype=torch.float32).reshape(4, 4)  # a 2-D mask is one item
    (out,) = call(executor, "CropMask", mask=mask, x=2, y=1, width=5, height=2)
    assert out.tolist() == [[[6.0, 7.0], [10.0, 11.0]]]


@pytest.mark.parametrize(
    ("operation", "placed"),
    [
        ("multiply", [0.25, 0.5, 0.15]),
        ("add", [1.0, 1.0, 0.8]),  # clamped to 1
        ("subtract", [0.0, 0.5, 0.0]),  # clamped to 0
        # logical: 0.5 rounds to 0 (half to even), so the source is all 0 and the destination [0, 1, 0]
        ("and", [0.0, 0.0, 0.0]),
        ("or", [0.0, 1.0, 0.0]),
        ("xor", [0.0, 1.0, 0.0]),
    ],
)
def test_mask_composite_operations(executor: Executor, operation: str, placed: list[float]) -> None:
    destination = grid([[0.0, 0.5, 1.0, 0.3]])
    source = grid([[0.5, 0.5, 0.5]])
    (out,) = call(
        executor, "MaskComposite", destination=destination, source=source, x=1, y=0, operation=operation
    )
    assert out[0, 0, 0].item() == 0.0  # outside the placed source: unchanged
    assert out[0, 0, 1:].tolist() == pytest.approx(placed)


def test_feather_mask_ramps_keep_comfyui_quirk(executor: Executor) -> None:
    (out,) = call(executor, "FeatherMask", mask=torch.ones(1, 1, 5), left=2, top=0, right=2, bottom=0)
    # left: columns 0, 1 scaled by 1/2, 2/2; right: column "-0" = 0 by 1/2, column -1 by 2/2
    assert out.tolist() == [[[0.25, 1.0, 1.0, 1.0, 1.0]]]
    (out,) = call(executor, "FeatherMask", mask=torch.ones(1, 4, 1), left=0, top=4, right=0, bottom=0)
    assert out[0, :, 0].tolist() == [0.25, 0.5, 0.75, 1.0]


def test_grow_mask_square_cross_and_shrink(executor: Executor) -> None:
    dot = torch.zeros(1, 5, 5)
    dot[0, 2, 2] = 1.0
    (square,) = call(executor, "GrowMask", mask=dot, expand=1, tapered_corners=False)
    assert square[0].sum().item() == 9 and square[0, 1:4, 1:4].min().item() == 1.0
    (cross,) = call(executor, "GrowMask", mask=dot, expand=1, tapered_corners=True)
    assert cross[0].sum().item() == 5 and cross[0, 1, 1].item() == 0.0
    (shrunk,) = call(executor, "GrowMask", mask=square, expand=-1, tapered_corners=False)
    assert torch.equal(shrunk, dot)
    full = torch.ones(1, 3, 3)  # the border repeats the edge: a full mask stays full when shrunk
    (kept,) = call(executor, "GrowMask", mask=full, expand=-2, tapered_corners=True)
    assert torch.equal(kept, full)


def test_image_to_mask_and_color_to_mask(executor: Executor) -> None:
    image = torch.tensor([[[[1.0, 0.5, 0.0], [0.0, 0.0, 1.0]]]])
    (green,) = call(executor, "ImageToMask", image=image, channel="green")
    assert green.tolist() == [[[0.5, 0.0]]]
    # 0.5 * 255 = 127.5 rounds to 128 = 0x80
    (hit,) = call(executor, "ImageColorToMask", image=image, color=0xFF8000)
    assert hit.tolist() == [[[1.0, 0.0]]]


def test_image_to_mask_alpha_of_rgb_is_a_clear_error(executor: Executor) -> None:
    with pytest.raises(AssertionError, match="only 3 channels"):
        call(executor, "ImageToMask", image=torch.zeros(1, 2, 2, 3), channel="alpha")
