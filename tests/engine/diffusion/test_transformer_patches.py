"""Attention and block patches keyed by ComfyUI's block ids, on diffusers' UNet."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion.unet_hooks import layout, optimized_attention
from tests.engine.diffusion.conftest import sample, tiny_model

# (block, block_index, transformer_index) of every cross-attention in one UNet call, in call order, as
# ComfyUI's UNet reports them for these layouts (tiny SD1: attention at level 0; tiny SDXL: level 1,
# two transformer blocks per stack).
ATTENTION_SITES = {
    "sd1": [(("input", 1), 0, 0), (("middle", 0), 0, 1), (("output", 2), 0, 2), (("output", 3), 0, 3)],
    "sdxl": [
        (("input", 3), 0, 0),
        (("input", 3), 1, 0),
        (("middle", 0), 0, 1),
        (("middle", 0), 1, 1),
        (("output", 0), 0, 2),
        (("output", 0), 1, 2),
        (("output", 1), 0, 3),
        (("output", 1), 1, 3),
    ],
}


def test_identity_attention_patches_keep_the_image_and_see_comfy_extra_options(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    sites: list[tuple[Any, ...]] = []
    extras: list[dict[str, Any]] = []

    def attn2(n: Any, context: Any, value: Any, extra: dict[str, Any]) -> tuple[Any, Any, Any]:
        sites.append((extra["block"], extra["block_index"], extra["transformer_index"]))
        extras.append(extra)
        return n, context, value

    patched.set_model_attn2_patch(attn2)
    patched.set_model_attn1_patch(lambda n, context, value, extra: (n, context, value))
    patched.set_model_attn1_output_patch(lambda n, extra: n)
    patched.set_model_attn2_output_patch(lambda n, extra: n)
    assert torch.equal(sample(patched, steps=1), sample(model, steps=1))
    assert sites == ATTENTION_SITES[family]
    extra = extras[0]
    assert extra["cond_or_uncond"] == [0, 1] and extra["original_shape"] == [2, 4, 8, 8]
    assert extra["n_heads"] * extra["dim_head"] > 0 and extra["sigmas"].numel() == 1
    assert len(extra["activations_shape"]) == 4 and extra["sample_sigmas"].shape == (2,)


def test_attn2_replace_at_one_block_with_plain_attention_is_identical(family: str) -> None:
    model = tiny_model(family)
    block, index, _ = ATTENTION_SITES[family][0]
    patched = model.clone()
    calls: list[tuple[int, ...]] = []

    def plain(q: Any, k: Any, v: Any, extra: dict[str, Any]) -> Any:
        calls.append(tuple(q.shape))
        return optimized_attention(q, k, v, extra["n_heads"])

    patched.set_model_attn2_replace(plain, block[0], block[1], index)
    assert torch.equal(sample(patched, steps=1), sample(model, steps=1))
    assert len(calls) == 1 and calls[0][0] == 2


def test_attn2_replace_returning_zeros_changes_the_image_only_where_registered(family: str) -> None:
    model = tiny_model(family)
    block, _, _ = ATTENTION_SITES[family][0]
    zeroed = model.clone()
    zeroed.set_model_attn2_replace(lambda q, k, v, extra: torch.zeros_like(q), block[0], block[1])
    unused = model.clone()
    unused.set_model_attn2_replace(lambda q, k, v, extra: torch.zeros_like(q), "input", 99)
    base = sample(model, steps=2)
    assert not torch.allclose(sample(zeroed, steps=2), base)
    assert torch.equal(sample(unused, steps=2), base)
    assert "patches_replace" not in model.model_options["transformer_options"]


def test_attn1_replace_and_attn_patch_that_scales_context() -> None:
    model = tiny_model("sd1")
    patched = model.clone()
    patched.set_model_attn1_replace(
        lambda q, k, v, extra: optimized_attention(q, k, v, extra["n_heads"]), "middle", 0
    )
    assert torch.equal(sample(patched, steps=1), sample(model, steps=1))
    scaled = model.clone()
    scaled.set_model_attn2_patch(lambda n, context, value, extra: (n, context * 0, value * 0))
    assert not torch.allclose(sample(scaled, steps=1), sample(model, steps=1))


def test_block_patches_run_at_comfy_block_ids_and_identity_keeps_the_image(family: str) -> None:
    model = tiny_model(family)
    patched = model.clone()
    inputs: list[Any] = []
    outputs: list[Any] = []

    def input_patch(h: Any, options: dict[str, Any]) -> Any:
        inputs.append(options["block"])
        return h

    def output_patch(h: Any, hsp: Any, options: dict[str, Any]) -> tuple[Any, Any]:
        outputs.append(options["block"])
        assert h.shape[0] == hsp.shape[0] and h.shape[2:] == hsp.shape[2:]
        return h, hsp

    patched.set_model_input_block_patch(input_patch)
    patched.set_model_output_block_patch(output_patch)
    assert torch.equal(sample(patched, steps=1), sample(model, steps=1))
    # Two levels of one resnet each: conv_in, level 0, its downsampler, level 1; three per up level.
    assert inputs == [("input", 0), ("input", 1), ("input", 2), ("input", 3)]
    assert outputs == [("output", i) for i in range(4)]
    assert layout(model.unet).block_ids()["input"] == inputs


@pytest.mark.parametrize("kind", ["input", "output"])
def test_block_patch_that_changes_h_changes_the_image(kind: str) -> None:
    model = tiny_model("sd1")
    patched = model.clone()
    if kind == "input":
        patched.set_model_input_block_patch(
            lambda h, options: h * 2 if options["block"] == ("input", 1) else h
        )
    else:
        patched.set_model_output_block_patch(
            lambda h, hsp, options: (h, hsp * 0) if options["block"] == ("output", 3) else (h, hsp)
        )
    assert not torch.allclose(sample(patched, steps=1), sample(model, steps=1))


def test_input_block_patch_scaling_conv_in_is_computed_by_hand() -> None:
    """Doubling conv_in's output equals doubling conv_in's weight and bias."""
    model = tiny_model("sd1")
    patched = model.clone()
    patched.set_model_input_block_patch(lambda h, options: h * 2 if options["block"] == ("input", 0) else h)
    doubled = model.clone()
    doubled.add_patches(
        {
            f"diffusion_model.input_blocks.0.0.{p}": ("diff", (t.clone(),))
            for p, t in model.unet.conv_in.state_dict().items()
        }
    )
    torch.testing.assert_close(sample(patched, steps=2), sample(doubled, steps=2), atol=1e-4, rtol=1e-4)


def test_block_ids_on_the_full_sd1_layout() -> None:
    """SD1.5's layout (4 levels of 2 resnets, attention on the first 3) at tiny widths."""
    from diffusers import UNet2DConditionModel

    from engine.diffusion.handles import model_patcher
    from engine.diffusion.latent_formats import latent_format
    from engine.sampling import ModelSampling

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 32, 32, 32),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=32,
        attention_head_dim=8,
        norm_num_groups=32,
    ).eval()
    model = model_patcher(unet, ModelSampling("eps"), "sd1", latent_format("sd1", 0.18215, {}))
    seen: dict[str, list[Any]] = {"attn": [], "input": [], "output": []}
    model.set_model_attn2_patch(lambda n, c, v, extra: (seen["attn"].append(extra["block"]), (n, c, v))[1])
    model.set_model_input_block_patch(lambda h, o: (seen["input"].append(o["block"][1]), h)[1])
    model.set_model_output_block_patch(lambda h, hsp, o: (seen["output"].append(o["block"][1]), (h, hsp))[1])
    context = torch.zeros(1, 77, 32)
    sigmas = torch.tensor([1.0])
    from engine.diffusion.guidance import calc_cond_batch, convert_cond

    with torch.no_grad(), model.applied() as inner:
        calc_cond_batch(
            inner, [convert_cond([[context, {}]])], torch.zeros(1, 4, 16, 16), sigmas, model.model_options
        )
    attention_inputs = [("input", i) for i in (1, 2, 4, 5, 7, 8)]
    attention_outputs = [("output", i) for i in range(3, 12)]
    assert seen["attn"] == [*attention_inputs, ("middle", 0), *attention_outputs]
    assert seen["input"] == list(range(12)) and seen["output"] == list(range(12))
    assert "diffusion_model.output_blocks.5.2.conv.weight" in model.model_state_dict()  # an upsampler
    config = model.model.model_config.unet_config  # ComfyUI's keys, as FreeU and others read them
    assert config["model_channels"] == 32 and config["channel_mult"] == [1, 1, 1, 1]
    assert config["transformer_depth"] == [1, 1, 1, 1, 1, 1, 0, 0] and config["num_res_blocks"] == [2] * 4
    assert config["context_dim"] == 32 and config["transformer_depth_middle"] == 1
