"""Weight patches in ComfyUI's format on ComfyUI's key names; LoRA goes through the same mechanism."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from engine.diffusion import handles
from engine.sampling import ModelSampling
from tests.engine.diffusion.conftest import sample, tiny_model

KEY = "diffusion_model.input_blocks.1.1.proj_in.weight"  # down_blocks.0.attentions.0.proj_in in diffusers


def test_state_dict_uses_comfy_names_and_shares_the_unet_weights() -> None:
    model = tiny_model("sd1")
    state = model.model_state_dict()
    assert len(state) == len(list(model.unet.parameters()))
    assert torch.equal(state[KEY], model.unet.down_blocks[0].attentions[0].proj_in.weight)
    assert (
        "diffusion_model.out.2.weight" in state and "diffusion_model.middle_block.1.proj_out.weight" in state
    )
    assert set(model.model_state_dict("diffusion_model.input_blocks.0.")) == {
        "diffusion_model.input_blocks.0.0.weight",
        "diffusion_model.input_blocks.0.0.bias",
    }


def test_add_patches_applies_while_patched_and_restores_exactly() -> None:
    model = tiny_model("sd1")
    weight = model.model_state_dict()[KEY]
    original = weight.clone()
    diff = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    patched = model.clone()
    assert patched.add_patches({KEY: (diff,), "diffusion_model.no.such.weight": (diff,)}, 0.3, 0.5) == [KEY]
    assert not model.patches and len(patched.patches[KEY]) == 1
    patched.patch_model()
    try:
        torch.testing.assert_close(weight, original * 0.5 + 0.3 * diff)
    finally:
        patched.unpatch_model()
    assert torch.equal(weight, original)
    assert not torch.equal(sample(patched, steps=1), sample(model, steps=1))


def _lora_file(tmp_path: Path, model: handles.ModelPatcher) -> tuple[Path, torch.Tensor, torch.Tensor]:
    width = model.unet.down_blocks[0].attentions[0].proj_in.weight.shape[0]
    generator = torch.Generator().manual_seed(1)
    down, up = (
        torch.randn(2, width, 1, 1, generator=generator),
        torch.randn(width, 2, 1, 1, generator=generator),
    )
    name = "lora_unet_down_blocks_0_attentions_0_proj_in"
    path = tmp_path / "lora.safetensors"
    save_file(
        {f"{name}.lora_down.weight": down, f"{name}.lora_up.weight": up, f"{name}.alpha": torch.tensor(1.0)},
        str(path),
    )
    return path, up, down


def test_lora_loader_goes_through_add_patches_and_equals_a_hand_made_diff(tmp_path: Path) -> None:
    model = tiny_model("sd1")
    path, up, down = _lora_file(tmp_path, model)
    loaded, _ = handles.apply_lora(path, model, None, 0.8, 0.0)
    assert list(loaded.patches) == [KEY] and loaded.patches[KEY][0][0] == 0.8
    by_hand = model.clone()
    diff = (up.flatten(1) @ down.flatten(1)).reshape(model.model_state_dict()[KEY].shape) * (1.0 / 2)
    by_hand.add_patches({KEY: ("diff", (diff,))}, 0.8)
    torch.testing.assert_close(sample(loaded, steps=2), sample(by_hand, steps=2), atol=1e-5, rtol=1e-5)
    as_lora = model.clone()
    as_lora.add_patches({KEY: ("lora", (up, down, 1.0, None, None, None))}, 0.8)
    assert torch.equal(sample(as_lora, steps=2), sample(loaded, steps=2))


def test_merging_through_key_patches_as_model_merge_simple_does() -> None:
    model = tiny_model("sd1")
    weight = model.model_state_dict()[KEY]
    original = weight.clone()
    other = model.clone()
    diff = torch.ones_like(weight)
    other.add_patches({KEY: (diff,)})
    key_patches = other.get_key_patches("diffusion_model.")
    assert key_patches[KEY][0][0].data_ptr() == weight.data_ptr() and len(key_patches[KEY]) == 2
    merged = model.clone()
    ratio = 0.25
    for key, patches in key_patches.items():
        merged.add_patches({key: patches}, 1.0 - ratio, ratio)
    merged.patch_model()
    try:
        # ratio * this model + (1 - ratio) * the other one (its weight plus its own patch)
        torch.testing.assert_close(weight, original * ratio + (original + diff) * (1 - ratio))
    finally:
        merged.unpatch_model()
    assert torch.equal(weight, original)


def test_object_patch_replaces_model_sampling_for_that_clone_only() -> None:
    model = tiny_model("sd1")
    v_model = model.clone()
    v_sampling = ModelSampling("v_prediction")
    v_model.add_object_patch("model_sampling", v_sampling)
    assert v_model.get_model_object("model_sampling") is v_sampling
    assert model.get_model_object("model_sampling") is not v_sampling
    assert not torch.allclose(sample(v_model, steps=2), sample(model, steps=2))
    assert model.model.model_sampling is not v_sampling  # restored after sampling


def test_comfy_attributes_packs_read() -> None:
    model = tiny_model("sdxl")
    sampling = model.get_model_object("model_sampling")
    assert float(sampling.sigma_min) < 0.03 < 14 < float(sampling.sigma_max)
    sigma = torch.tensor([1.0])
    assert torch.allclose(sampling.sigma(sampling.timestep(sigma)), sigma, rtol=0.01)
    assert sampling.percent_to_sigma(0.0) > 1e8 and sampling.percent_to_sigma(1.0) == 0.0
    x = torch.ones(1, 4, 2, 2)
    assert torch.equal(sampling.calculate_denoised(sigma, torch.zeros_like(x), x), x)
    assert (
        model.model.latent_format.latent_channels == 4 and model.model.latent_format.scale_factor == 0.18215
    )
    assert model.model.model_type.name == "EPS" and model.model.model_config.name == "SDXL"
    assert model.model.diffusion_model is model.unet and model.model_dtype() == torch.float32
    assert model.model_size() > 0 and model.load_device.type in ("cpu", "cuda", "mps")
    assert model.is_clone(model.clone()) and not model.is_clone(tiny_model("sd1"))
    assert model.model.memory_required([2, 4, 8, 8]) > 0
