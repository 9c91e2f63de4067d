"""Blur, sharpen, quantise, morphology and Canny on small images, against hand-worked values."""

from __future__ import annotations

import math

import pytest
import torch

from engine.executor import Executor
from tests.nodes.harness import call


def impulse(size: int = 5) -> torch.Tensor:
    image = torch.zeros(1, size, size, 1)
    image[0, size // 2, size // 2] = 1.0
    return image


def test_blur_of_an_impulse_is_the_kernel(executor: Executor) -> None:
    (out,) = call(executor, "ImageBlur", image=impulse(), blur_radius=1, sigma=1.0)
    # the 3×3 kernel spans -1..1: weights 1 (centre), e^-1/2 (edges), e^-1 (corners), normalised
    total = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1)
    assert out[0, 2, 2, 0].item() == pytest.approx(1 / total)
    assert out[0, 1, 2, 0].item() == pytest.approx(math.exp(-0.5) / total)
    assert out[0, 0, 0, 0].item() == 0.0
    flat = torch.full((1, 4, 4, 3), 0.3)
    (blurred,) = call(executor, "ImageBlur", image=flat, blur_radius=2, sigma=0.5)
    assert torch.allclose(blurred, flat)


def test_sharpen_keeps_flat_areas_and_lifts_a_peak(executor: Executor) -> None:
    flat = torch.full((1, 4, 4, 3), 0.3)
    (same,) = call(executor, "ImageSharpen", image=flat, sharpen_radius=1, sigma=1.0, alpha=1.0)
    assert torch.allclose(same, flat)
    image = torch.full((1, 5, 5, 1), 0.5)
    image[0, 2, 2] = 0.6
    (sharp,) = call(executor, "ImageSharpen", image=image, sharpen_radius=1, sigma=1.0, alpha=0.1)
    # centre weight 1 + (1 - 1/total)·alpha·10 applied to the +0.1 bump: 0.5 + 0.1 · (2 - 1/total)
    total = 1 + 4 * math.exp(-0.5) + 4 * math.exp(-1)
    assert sharp[0, 2, 2, 0].item() == pytest.approx(0.5 + 0.1 * (2 - 1 / total), abs=1e-5)


def test_quantize_to_two_colors(executor: Executor) -> None:
    image = torch.zeros(1, 4, 4, 3)
    image[:, :2] = torch.tensor([1.0, 0.0, 0.0])
    image[:, 2:] = torch.tensor([0.0, 0.0, 1.0])
    image[0, 0, 0] = torch.tensor([0.9, 0.1, 0.0])  # close to red
    (out,) = call(executor, "ImageQuantize", image=image, colors=2, dither="none")
    assert len({tuple(p) for p in out.reshape(-1, 3).tolist()}) == 2
    assert out[0, 0, 0, 2].item() == 0.0 and out[0, 3, 3, 2].item() == 1.0
    (dithered,) = call(executor, "ImageQuantize", image=image, colors=2, dither="bayer-4")
    assert dithered.shape == image.shape and len({tuple(p) for p in dithered.reshape(-1, 3).tolist()}) <= 2


def test_morphology(executor: Executor) -> None:
    (dilated,) = call(executor, "Morphology", image=impulse(), operation="dilate", kernel_size=3)
    assert dilated[0, :, :, 0].sum().item() == 9 and dilated[0, 1:4, 1:4].min().item() == 1.0
    (opened,) = call(executor, "Morphology", image=impulse(), operation="open", kernel_size=3)
    assert opened.sum().item() == 0  # an isolated pixel does not survive opening
    (top_hat,) = call(executor, "Morphology", image=impulse(), operation="top_hat", kernel_size=3)
    assert torch.equal(top_hat, impulse())
    (gradient,) = call(executor, "Morphology", image=impulse(), operation="gradient", kernel_size=3)
    assert torch.equal(gradient, dilated)
    (square,) = call(executor, "Morphology", image=impulse(7), operation="dilate", kernel_size=3)
    (closed,) = call(executor, "Morphology", image=square, operation="close", kernel_size=3)
    assert torch.equal(closed, square)
    # an even kernel: erosion's window starts one pixel before, dilation's one after (kornia's convention)
    (even,) = call(executor, "Morphology", image=impulse(), operation="dilate", kernel_size=4)
    assert even[0, :, :, 0].nonzero()[:, 0].unique().tolist() == [0, 1, 2, 3]  # window [-1, +2]
    (eroded,) = call(executor, "Morphology", image=1 - impulse(), operation="erode", kernel_size=4)
    assert (1 - eroded)[0, :, :, 0].nonzero()[:, 0].unique().tolist() == [1, 2, 3, 4]  # window [-2, +1]


def test_canny_marks_one_column_at_a_vertical_step(executor: Executor) -> None:
    image = torch.zeros(1, 10, 10, 3)
    image[:, :, 5:] = 1.0
    (edges,) = call(executor, "Canny", image=image, low_threshold=0.4, high_threshold=0.8)
    assert edges.shape == (1, 10, 10, 3)
    # the two pixels either side of the step tie; the left one is kept, as OpenCV and kornia do
    assert edges[0, :, :, 0].nonzero()[:, 1].unique().tolist() == [4]
    assert edges[0, :, 4, 0].tolist() == [1.0] * 10
    (none,) = call(
        executor, "Canny", image=torch.full((1, 8, 8, 3), 0.5), low_threshold=0.1, high_threshold=0.2
    )
    assert none.sum().item() == 0


def test_canny_hysteresis_keeps_weak_edges_only_next_to_strong_ones(executor: Executor) -> None:
    image = torch.zeros(1, 12, 12, 3)
    image[:, :, 6:] = torch.linspace(0.02, 0.6, 12).reshape(12, 1, 1)  # the step grows down the image
    (low,) = call(executor, "Canny", image=image, low_threshold=0.3, high_threshold=0.99)
    (high,) = call(executor, "Canny", image=image, low_threshold=0.99, high_threshold=0.99)
    # the edge runs down column 6, its magnitude growing from 0.54 (row 3) to 1.44 (row 11): alone, the
    # strong threshold keeps rows 7-11; weak pixels above 0.3 joined to them add rows 3-6
    assert high[0, :, 6, 0].nonzero().flatten().tolist() == [7, 8, 9, 10, 11]
    assert low[0, :, 6, 0].nonzero().flatten().tolist() == list(range(3, 12))


def test_canny_thresholds_in_the_wrong_order_are_an_error(executor: Executor) -> None:
    with pytest.raises(AssertionError, match=r"low_threshold 0\.8 is above high_threshold 0\.4"):
        call(executor, "Canny", image=torch.zeros(1, 8, 8, 3), low_threshold=0.8, high_threshold=0.4)
