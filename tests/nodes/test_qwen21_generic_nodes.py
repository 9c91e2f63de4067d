"""ManualSigmas and BatchImagesNode (nodes newer than ComfyUI 0.3.64 that the Qwen-Image 2.1 templates use),
through the executor."""

from __future__ import annotations

import pytest
import torch

from engine.executor import Executor
from tests.nodes.harness import call


def test_manual_sigmas_reads_the_typed_schedule(executor: Executor) -> None:
    (sigmas,) = call(executor, "ManualSigmas", sigmas="1.0, 0.978453,0.5 \n 0")
    assert sigmas.dtype == torch.float32
    assert sigmas.tolist() == pytest.approx([1.0, 0.978453, 0.5, 0.0])


@pytest.mark.parametrize(("text", "expected"), [("1, half, 0", "'half'"), (" , ", "no numbers")])
def test_manual_sigmas_names_bad_input(executor: Executor, text: str, expected: str) -> None:
    with pytest.raises(Exception, match=f"ManualSigmas: input 'sigmas'.*{expected}|{expected}"):
        call(executor, "ManualSigmas", sigmas=text)


def test_batch_images_orders_by_number_resizes_and_adds_alpha(executor: Executor) -> None:
    first = torch.zeros((1, 8, 8, 3))
    bigger = torch.ones((2, 16, 16, 4)) * 0.5
    third = torch.full((1, 8, 8, 3), 0.25)
    inputs = {"images.image5": third, "images.image0": first, "images.image1": bigger}
    (batch,) = call(executor, "BatchImagesNode", **inputs)
    assert batch.shape == (4, 8, 8, 4)
    assert torch.equal(batch[0, ..., :3], first[0])  # image0 first, then 1, then 5
    assert torch.allclose(batch[1:3], torch.full((2, 8, 8, 4), 0.5))
    assert torch.equal(batch[3, ..., :3], third[0])
    assert torch.equal(batch[[0, 3], ..., 3], torch.ones((2, 8, 8)))  # RGB gets opaque alpha


def test_batch_images_without_images_is_an_error(executor: Executor) -> None:
    with pytest.raises(Exception, match="BatchImagesNode: connect at least one image"):
        call(executor, "BatchImagesNode")
