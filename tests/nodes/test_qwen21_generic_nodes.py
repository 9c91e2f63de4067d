"""ManualSigmas and BatchImagesNode (nodes newer than ComfyUI 0.3.64 that the Qwen-Image 2.1 templates use),
through the executor."""

from __future__ import annotations

from typing import Any

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


def _language_clip(tmp_path: Any) -> Any:
    """A CLIP of a tiny Qwen3 file with an lm_head, loaded as ComfyUI's CLIPLoader would."""
    from safetensors.torch import save_file

    from engine.models import flow_families
    from tests.nodes.flow_fixtures_new import qwen_file_state, tiny_qwen

    encoder = tiny_qwen("qwen3", 50, hidden=32)
    state = qwen_file_state(encoder, with_head=False)
    state["lm_head.weight"] = torch.randn(encoder.config.vocab_size, 32) * 0.5
    path = tmp_path / "qwen3vl_8b.safetensors"
    save_file(state, str(path))
    return flow_families.load_clip([path], "qwen_image")


def test_text_generate_is_deterministic_per_seed(executor: Executor, tmp_path: Any) -> None:
    clip = _language_clip(tmp_path)
    sampled = {"sampling_mode": "on", "sampling_mode.seed": 7, "sampling_mode.top_k": 20}
    (first,) = call(executor, "TextGenerate", clip=clip, prompt="a fox", max_length=6, **sampled)
    (again,) = call(executor, "TextGenerate", clip=clip, prompt="a fox", max_length=6, **sampled)
    other_seed = {**sampled, "sampling_mode.seed": 8}
    (other,) = call(executor, "TextGenerate", clip=clip, prompt="a fox", max_length=6, **other_seed)
    (greedy,) = call(executor, "TextGenerate", clip=clip, prompt="a fox", max_length=6, sampling_mode="off")
    (greedy_again,) = call(
        executor, "TextGenerate", clip=clip, prompt="a fox", max_length=6, sampling_mode="off"
    )
    assert isinstance(first, str) and first and first == again
    assert other != first
    assert greedy == greedy_again


def test_text_generate_names_what_it_cannot_read(executor: Executor, tmp_path: Any) -> None:
    clip = _language_clip(tmp_path)
    with pytest.raises(Exception, match="TextGenerate: input 'image' is not read"):
        call(
            executor,
            "TextGenerate",
            clip=clip,
            prompt="x",
            max_length=2,
            sampling_mode="off",
            image=torch.zeros(1, 8, 8, 3),
        )
