"""Model and CLIP merging nodes on tiny SD1 and SDXL checkpoints: the ends of every ratio give each parent
exactly, block ratios touch only the weights under their ComfyUI key prefixes, CLIP merges carry the
other CLIP's patches."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.diffusion import handles
from engine.executor import Executor
from engine.folders import Folders
from nodes.model_patches.merging_blocks import ModelMergeSD1, ModelMergeSDXL
from tests.nodes.harness import call
from tests.nodes.merge_fixtures import add_checkpoint

UNET = "diffusion_model."


def load(folders: Folders, name: str) -> handles.Checkpoint:
    return handles.load(folders.model_path("checkpoints", name))


@pytest.fixture
def sd1_pair(sd_folders: Folders, tmp_path: Path) -> tuple[handles.Checkpoint, handles.Checkpoint]:
    other = add_checkpoint(sd_folders, tmp_path / "more", "sd1", seed=1)
    return load(sd_folders, "tiny_sd1.safetensors"), load(sd_folders, other)


@pytest.fixture
def sdxl_pair(sd_folders: Folders, tmp_path: Path) -> tuple[handles.Checkpoint, handles.Checkpoint]:
    other = add_checkpoint(sd_folders, tmp_path / "more", "sdxl", seed=1)
    return load(sd_folders, "tiny_sdxl.safetensors"), load(sd_folders, other)


def ratios(blocks: tuple[str, ...], **overrides: float) -> dict[str, float]:
    """Every ratio input of a block merge (all are required, as in ComfyUI): 1.0 unless overridden."""
    return {block: overrides.get(block, 1.0) for block in blocks}


def weights(model: Any) -> dict[str, torch.Tensor]:
    """The model's UNet weights with its patches applied (ComfyUI's key names)."""
    with model.applied():
        return {k: v.detach().clone() for k, v in model.model_state_dict().items()}


def assert_from(
    merged: dict[str, torch.Tensor], first: Any, second: Any, takes_second: Callable[[str], bool]
) -> None:
    """Every weight equals the second parent's where `takes_second(name)`, else the first's, exactly."""
    a, b = weights(first), weights(second)
    assert merged.keys() == a.keys()
    for key, value in merged.items():
        name = key[len(UNET) :]
        expected = b[key] if takes_second(name) else a[key]
        assert torch.equal(value, expected), key


def test_merge_ends_are_each_parent_exactly(executor: Executor, sd1_pair: Any) -> None:
    first, second = (c.model for c in sd1_pair)
    for node, inputs in (
        ("ModelMergeSimple", {"ratio": 0.0}),
        ("ModelMergeBlocks", {"input": 0.0, "middle": 0.0, "out": 0.0}),
    ):
        (merged,) = call(executor, node, model1=first, model2=second, **inputs)
        assert_from(weights(merged), first, second, lambda name: True)
    (merged,) = call(
        executor, "ModelMergeBlocks", model1=first, model2=second, input=1.0, middle=1.0, out=1.0
    )
    assert_from(weights(merged), first, second, lambda name: False)
    assert not first.patches and not second.patches  # the parents are untouched clones' sources


def test_model_merge_blocks_uses_the_longest_prefix(executor: Executor, sd1_pair: Any) -> None:
    first, second = (c.model for c in sd1_pair)
    (merged,) = call(
        executor, "ModelMergeBlocks", model1=first, model2=second, input=0.0, middle=1.0, out=1.0
    )
    # time_embed and label_emb match no input: they take the first ratio (input), as in ComfyUI.
    assert_from(
        weights(merged), first, second, lambda name: name.startswith(("input_blocks.", "time_embed."))
    )
    (merged,) = call(
        executor, "ModelMergeBlocks", model1=first, model2=second, input=1.0, middle=1.0, out=0.0
    )
    # "out" is a prefix of both output_blocks.* and out.*
    assert_from(weights(merged), first, second, lambda name: name.startswith(("output_blocks.", "out.")))


def test_model_merge_sd1_block_ratios_touch_only_their_block(executor: Executor, sd1_pair: Any) -> None:
    first, second = (c.model for c in sd1_pair)
    (merged,) = call(
        executor,
        "ModelMergeSD1",
        model1=first,
        model2=second,
        **ratios(ModelMergeSD1.BLOCKS, **{"input_blocks.1.": 0.0, "out.": 0.0}),
    )
    assert_from(weights(merged), first, second, lambda name: name.startswith(("input_blocks.1.", "out.")))
    (half,) = call(
        executor,
        "ModelMergeSD1",
        model1=first,
        model2=second,
        **ratios(ModelMergeSD1.BLOCKS, **{"middle_block.1.": 0.25}),
    )
    got, a, b = weights(half), weights(first), weights(second)
    middle = [k for k in got if k.startswith(UNET + "middle_block.1.")]
    assert middle
    for key in got:
        expected = a[key] * 0.25 + 0.75 * b[key] if key in middle else a[key]
        assert torch.allclose(got[key], expected, atol=1e-6), key


def test_model_merge_sdxl_block_ratios(executor: Executor, sdxl_pair: Any) -> None:
    first, second = (c.model for c in sdxl_pair)
    chosen = ratios(ModelMergeSDXL.BLOCKS, **{"output_blocks.2": 0.0, "label_emb.": 0.0})
    (merged,) = call(executor, "ModelMergeSDXL", model1=first, model2=second, **chosen)
    picked = weights(merged)
    assert any(k.startswith(UNET + "label_emb.") for k in picked)
    assert_from(picked, first, second, lambda name: name.startswith(("output_blocks.2", "label_emb.")))


def encode(clip: Any, text: str = "a red circle") -> torch.Tensor:
    return clip.encode_from_tokens(clip.tokenize(text))


@pytest.mark.parametrize("family", ["sd1", "sdxl"])
def test_clip_merge_simple_ends_and_middle(
    executor: Executor, sd1_pair: Any, sdxl_pair: Any, family: str
) -> None:
    first, second = (c.clip for c in (sd1_pair if family == "sd1" else sdxl_pair))
    (keep,) = call(executor, "CLIPMergeSimple", clip1=first, clip2=second, ratio=1.0)
    (take,) = call(executor, "CLIPMergeSimple", clip1=first, clip2=second, ratio=0.0)
    (half,) = call(executor, "CLIPMergeSimple", clip1=first, clip2=second, ratio=0.5)
    assert torch.equal(encode(keep), encode(first)) and torch.equal(encode(take), encode(second))
    assert not torch.equal(encode(half), encode(first)) and not torch.equal(encode(half), encode(second))
    assert not first.patches and all(len(p) == 2 for p in half.get_key_patches().values())
    assert torch.equal(encode(first), encode(sd1_pair[0].clip if family == "sd1" else sdxl_pair[0].clip))


def test_clip_subtract_then_add_restores_and_carries_loras(executor: Executor, sd1_pair: Any) -> None:
    first, second = (c.clip for c in sd1_pair)
    (zero,) = call(executor, "CLIPMergeSubtract", clip1=first, clip2=first, multiplier=1.0)
    (back,) = call(executor, "CLIPMergeAdd", clip1=first, clip2=zero)
    assert torch.equal(encode(back), encode(first))
    # clip2's own LoRA patch travels with its weights into the merge.
    up, down = torch.full((128, 1), 0.2), torch.full((1, 64), 0.3)  # fc1: 64 → 128
    lora = {
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": up,
        "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": down,
    }
    _, with_lora = handles.lora_for_models(lora, None, second, 0.0, 1.0)
    assert with_lora is not None and not torch.equal(encode(with_lora), encode(second))
    (take,) = call(executor, "CLIPMergeSimple", clip1=first, clip2=with_lora, ratio=0.0)
    assert torch.equal(encode(take), encode(with_lora))
