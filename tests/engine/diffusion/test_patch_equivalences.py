"""ModelPatcher hooks act where ComfyUI's UNet applies them, shown by pairs of patches that must give
the same image in ComfyUI: a patch on the attention inputs against a replacement of the attention, an
output patch against the same change made to the weights, a 3-tuple replacement key against the
transformer block it names, a weight scaling against a block patch, and a latent format object
patch against the scaling it implies."""

from __future__ import annotations

import re
from typing import Any

import torch

from engine.diffusion.model_patcher import ModelPatcher
from tests.engine.diffusion.conftest import sample, tiny_model
from tests.engine.diffusion.test_transformer_patches import ATTENTION_SITES


def close(a: Any, b: Any) -> None:
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_zeroed_attn2_inputs_equal_an_attn2_replacement_returning_zeros(family: str) -> None:
    # ComfyUI calls attn2_patch on (n, context, value) before to_k / to_v (no bias, so k = v = 0 and the
    # attention is 0), and a replacement in place of the attention before to_out: both give to_out(0).
    model = tiny_model(family)
    zero_inputs = model.clone()
    zero_inputs.set_model_attn2_patch(lambda n, context, value, extra: (n, context * 0, value * 0))
    replaced = model.clone()
    for (block, number), index, _ in ATTENTION_SITES[family]:
        replaced.set_model_attn2_replace(lambda q, k, v, extra: torch.zeros_like(q), block, number, index)
    result = sample(replaced, steps=2)
    close(sample(zero_inputs, steps=2), result)
    assert not torch.allclose(result, sample(model, steps=2), atol=1e-3)


def _doubled_weights(model: ModelPatcher, pattern: str) -> ModelPatcher:
    """A clone with every weight whose ComfyUI name matches `pattern` doubled (a diff of itself)."""
    doubled = model.clone()
    state = model.model_state_dict()
    keys = [k for k in state if re.search(pattern, k)]
    assert keys
    doubled.add_patches({k: ("diff", (state[k].clone(),)) for k in keys})
    return doubled


def test_attention_output_patches_act_after_to_out(family: str) -> None:
    # ComfyUI runs attn1/attn2_output_patch on the attention's output after to_out and before the
    # residual add: doubling it there equals doubling to_out's weight and bias.
    model = tiny_model(family)
    for kind in ("attn1", "attn2"):
        patched = model.clone()
        setter = getattr(patched, f"set_model_{kind}_output_patch")
        setter(lambda n, extra: n * 2)
        expected = sample(_doubled_weights(model, rf"\.{kind}\.to_out\.0\.(weight|bias)$"), steps=2)
        close(sample(patched, steps=2), expected)
        assert not torch.allclose(expected, sample(model, steps=2), atol=1e-3)


def test_replacement_key_with_an_index_names_one_transformer_block_of_its_stack() -> None:
    # Tiny SDXL has two transformer blocks per stack: ("output", 1, 1) is the second one of output
    # block 1 only; ("output", 1) is every block of that stack without an indexed key of its own.
    model = tiny_model("sdxl")
    calls: dict[str, list[int]] = {"indexed": [], "stack": []}

    def recording(name: str) -> Any:
        def replace(q: Any, k: Any, v: Any, extra: dict[str, Any]) -> Any:
            calls[name].append(extra["block_index"])
            return torch.zeros_like(q)

        return replace

    indexed = model.clone()
    indexed.set_model_attn1_replace(recording("indexed"), "output", 1, 1)
    stack = model.clone()
    stack.set_model_attn1_replace(recording("stack"), "output", 1)
    base = sample(model, steps=1)
    assert not torch.allclose(sample(indexed, steps=1), base, atol=1e-3)
    assert not torch.allclose(sample(stack, steps=1), base, atol=1e-3)
    assert calls == {"indexed": [1], "stack": [0, 1]}


def test_weight_scaling_patch_equals_scaling_the_block_output() -> None:
    # add_patches({key: (None,)}, 0.0, value) scales a weight by `value` (strength_model), as
    # essentials' FluxBlocksBuster+ uses it: doubling conv_in's weight and bias doubles its output.
    model = tiny_model("sd1")
    scaled = model.clone()
    keys = [k for k in model.model_state_dict() if k.startswith("diffusion_model.input_blocks.0.0.")]
    for key in keys:
        scaled.add_patches({key: (None,)}, 0.0, 2.0)
    block_patch = model.clone()
    block_patch.set_model_input_block_patch(lambda h, o: h * 2 if o["block"] == ("input", 0) else h)
    close(sample(scaled, steps=2), sample(block_patch, steps=2))


def test_latent_format_object_patch_scales_the_latent_in_and_out() -> None:
    # With a denoiser that returns its input, euler keeps the noisy start: process_latent_out(noise *
    # sigma_max) = noise * sigma_max / scale_factor. A latent_format object patch changes that as in
    # ComfyUI, whose process_latent_in/out read the model's (patched) latent_format.
    model = tiny_model("sd1")
    identity = model.clone()
    identity.set_model_unet_function_wrapper(lambda apply_model, args: args["input"])
    base_format = identity.get_model_object("latent_format")
    unit_format = type(base_format)(**{**vars(base_format), "scale_factor": 1.0})
    unit = identity.clone()
    unit.add_object_patch("latent_format", unit_format)
    default = sample(identity, steps=2)
    close(sample(unit, steps=2), default * base_format.scale_factor)
    assert model.get_model_object("latent_format") is base_format
