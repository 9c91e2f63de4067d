"""Image resize, crop, pad, paste, stitch, flip, rotate and batch nodes on small tensors, through the
registry and executor, against values worked out by hand from ComfyUI's definitions."""

from __future__ import annotations

import pytest
import torch

from engine.executor import Executor
from tests.nodes.harness import call


def ramp(batch: int = 1, height: int = 2, width: int = 3, channels: int = 3) -> torch.Tensor:
    return torch.arange(batch * height * width * channels, dtype=torch.float32).reshape(
        batch, height, width, channels
    ) / (batch * height * width * channels)


def test_scale_by_and_to_total_pixels(executor: Executor) -> None:
    image = ramp(height=2, width=3)
    (doubled,) = call(executor, "ImageScaleBy", image=image, upscale_method="nearest-exact", scale_by=2.0)
    assert doubled.shape == (1, 4, 6, 3) and torch.equal(doubled[0, ::2, ::2], image[0])
    big = torch.zeros(1, 50, 100, 3)
    (scaled,) = call(
        executor, "ImageScaleToTotalPixels", image=big, upscale_method="bilinear", megapixels=0.01
    )
    # int(0.01 · 1024²) = 10485 pixels; scale √(10485 / 5000) = 1.448 → 145 × 72
    assert scaled.shape == (1, 72, 145, 3)


def test_crop_keeps_the_corner_inside(executor: Executor) -> None:
    image = ramp(height=4, width=4)
    (crop,) = call(executor, "ImageCrop", image=image, width=2, height=9, x=9, y=1)
    assert torch.equal(crop, image[:, 1:, 3:4])  # x pulled back to 3, the crop clipped


def test_pad_for_outpaint_mask_feathers_into_the_image(executor: Executor) -> None:
    image = torch.zeros(1, 6, 6, 3)
    (padded, mask) = call(
        executor, "ImagePadForOutpaint", image=image, left=2, top=0, right=0, bottom=0, feathering=2
    )
    assert (
        padded.shape == (1, 6, 8, 3)
        and torch.all(padded[:, :, :2] == 0.5)
        and torch.all(padded[:, :, 2:] == 0)
    )
    # columns 0-1 padded (1); inside, distance to the padded left side j: ((2 - j) / 2)² for j < 2
    assert mask.shape == (1, 6, 8)
    assert mask[0, 3].tolist() == [1.0, 1.0, 1.0, 0.25, 0.0, 0.0, 0.0, 0.0]


def test_composite_masked_matches_channels_and_blends(executor: Executor) -> None:
    destination = torch.zeros(1, 2, 2, 4)
    source = torch.ones(1, 1, 1, 3)
    mask = torch.full((1, 1, 1), 0.5)
    (out,) = call(
        executor,
        "ImageCompositeMasked",
        destination=destination,
        source=source,
        x=1,
        y=1,
        resize_source=False,
        mask=mask,
    )
    assert out.shape == (1, 2, 2, 4)
    # the RGB source gets an opaque alpha; half blended at (1, 1) only
    assert out[0, 1, 1].tolist() == [0.5, 0.5, 0.5, 0.5] and out[0, 0, 0].tolist() == [0.0] * 4
    (rgb,) = call(
        executor,
        "ImageCompositeMasked",
        destination=torch.zeros(1, 2, 2, 3),
        source=torch.ones(1, 1, 1, 4),
        x=0,
        y=0,
        resize_source=True,
    )
    assert rgb.shape == (1, 2, 2, 3) and torch.all(rgb == 1.0)  # alpha dropped, source stretched


def test_stitch_matches_size_and_adds_spacing(executor: Executor) -> None:
    image1 = torch.zeros(1, 2, 2, 3)
    image2 = torch.ones(2, 1, 1, 3)
    (right,) = call(
        executor,
        "ImageStitch",
        image1=image1,
        image2=image2,
        direction="right",
        match_image_size=True,
        spacing_width=2,
        spacing_color="red",
    )
    # batch extended to 2, image2 resized to 2×2, a 2-pixel red gap between
    assert right.shape == (2, 2, 6, 3)
    assert right[0, 0, 2].tolist() == [1.0, 0.0, 0.0] and torch.all(right[:, :, 4:] == 1.0)
    (up,) = call(
        executor,
        "ImageStitch",
        image1=image1,
        image2=torch.ones(1, 1, 4, 3),
        direction="up",
        match_image_size=False,
        spacing_width=0,
        spacing_color="white",
    )
    # image2 first; image1 (2 wide) centred in 4 with white (1.0) borders
    assert up.shape == (1, 3, 4, 3) and up[0, 1, :, 0].tolist() == [1.0, 0.0, 0.0, 1.0]
    (alone,) = call(
        executor,
        "ImageStitch",
        image1=image1,
        direction="down",
        match_image_size=True,
        spacing_width=0,
        spacing_color="white",
    )
    assert torch.equal(alone, image1)


def test_flip_rotate_size(executor: Executor) -> None:
    image = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 2, 2, 1)
    (flipped,) = call(executor, "ImageFlip", image=image, flip_method="x-axis: vertically")
    assert flipped[0, :, :, 0].tolist() == [[3.0, 4.0], [1.0, 2.0]]
    (rotated,) = call(executor, "ImageRotate", image=image, rotation="90 degrees")
    assert rotated[0, :, :, 0].tolist() == [[3.0, 1.0], [4.0, 2.0]]
    assert call(executor, "GetImageSize", image=torch.zeros(3, 5, 7, 3)) == (7, 5, 3)


def test_batches(executor: Executor) -> None:
    image = ramp(batch=3)
    (repeated,) = call(executor, "RepeatImageBatch", image=image, amount=2)
    assert torch.equal(repeated, torch.cat([image, image]))
    (picked,) = call(executor, "ImageFromBatch", image=image, batch_index=7, length=3)
    assert torch.equal(picked, image[2:])
    (batches,) = call(executor, "RebatchImages", images=image, batch_size=2)
    assert [b.shape[0] for b in batches] == [2, 1] and torch.equal(batches[1], image[2:])


@pytest.mark.parametrize("rotation", ["none", "180 degrees", "270 degrees"])
def test_rotations_undo_each_other(executor: Executor, rotation: str) -> None:
    image = ramp(height=2, width=3)
    (once,) = call(executor, "ImageRotate", image=image, rotation=rotation)
    back = {"none": "none", "180 degrees": "180 degrees", "270 degrees": "90 degrees"}[rotation]
    (twice,) = call(executor, "ImageRotate", image=once, rotation=back)
    assert torch.equal(twice, image)
