"""comfy.sd, comfy.lora and the CLIP/VAE objects they hand out, as packs call them."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from engine import comfy_compat
from engine.diffusion import handles
from engine.folders import Folders
from engine.models.tiny import TEXT_WIDTH


@pytest.fixture
def comfy() -> Any:
    comfy_compat.install()
    return importlib.import_module


def checkpoint(folders: Folders, family: str) -> str:
    return str(folders.model_path("checkpoints", f"tiny_{family}.safetensors"))


def test_load_checkpoint_guess_config(comfy: Any, sd_folders: Folders) -> None:
    sd = comfy("comfy.sd")
    model, clip, vae, clip_vision = sd.load_checkpoint_guess_config(
        checkpoint(sd_folders, "sd1"), output_vae=True, output_clip=True, embedding_directory=None
    )
    assert isinstance(clip, sd.CLIP) and isinstance(vae, sd.VAE) and clip_vision is None
    assert isinstance(model.latent, comfy("comfy.latent_formats").SD15)
    assert (vae.downscale_ratio, vae.upscale_ratio, vae.latent_channels) == (
        2,
        2,
        4,
    )  # the tiny VAE: 2 levels
    assert vae.spacial_compression_decode() == vae.spacial_compression_encode() == 2
    assert vae.vae_dtype == torch.float32 and vae.first_stage_model is vae.vae
    _, no_clip, no_vae, _ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sd1"), False, False)
    assert no_clip is None and no_vae is None
    model_xl, *_ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sdxl"))
    assert isinstance(model_xl.latent, comfy("comfy.latent_formats").SDXL)


def test_tokenize_format_and_encode_variants(comfy: Any, sd_folders: Folders) -> None:
    _, clip, _, _ = comfy("comfy.sd").load_checkpoint_guess_config(checkpoint(sd_folders, "sdxl"))
    tokens = clip.tokenize("a (cat:1.5)")
    assert list(tokens) == ["g", "l"] and len(tokens["l"]) == 1 and len(tokens["l"][0]) == 77
    assert tokens["l"][0][:4] == [(49406, 1.0), (320, 1.0), (2368, 1.5), (49407, 1.0)]
    assert tokens["l"][0][-1] == (49407, 1.0) and tokens["g"][0][-1] == (0, 1.0)
    assert clip.tokenize("a cat", return_word_ids=True)["l"][0][:4] == [
        (49406, 1.0, 0),
        (320, 1.0, 1),
        (2368, 1.0, 1),
        (49407, 1.0, 0),
    ]

    cond = clip.encode_from_tokens(tokens)
    cond2, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    out = clip.encode_from_tokens(tokens, return_pooled=True, return_dict=True)
    assert (
        cond.shape == (1, 77, 2 * TEXT_WIDTH) and torch.equal(cond, cond2) and torch.equal(out["cond"], cond)
    )
    assert torch.equal(out["pooled_output"], pooled) and pooled.shape == (1, 32)  # CLIP-G's projection
    _, unprojected = clip.encode_from_tokens(tokens, return_pooled="unprojected")
    assert unprojected.shape == (1, TEXT_WIDTH)

    scheduled = clip.encode_from_tokens_scheduled(tokens, add_dict={"width": 1024})
    assert len(scheduled) == 1 and torch.equal(scheduled[0][0], cond)
    assert set(scheduled[0][1]) == {"pooled_output", "width"}


def test_clone_clip_layer_and_state_dict(comfy: Any, sd_folders: Folders) -> None:
    _, clip, _, _ = comfy("comfy.sd").load_checkpoint_guess_config(checkpoint(sd_folders, "sd1"))
    tokens = clip.tokenize("a cat")
    skipped = clip.clone()
    skipped.clip_layer(-2)
    assert clip.layer_idx is None and skipped.layer_idx == -2
    assert not torch.equal(clip.encode_from_tokens(tokens), skipped.encode_from_tokens(tokens))
    state = clip.get_sd()
    assert "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight" in state
    assert state["clip_l.transformer.text_model.embeddings.token_embedding.weight"].shape == (
        49408,
        TEXT_WIDTH,
    )
    assert clip.tokenizer is clip.tokenizer and clip.tokenizer.clip_l.embedding_key == "clip_l"
    assert clip.tokenizer.clip_l.max_length == 77 and clip.tokenizer.clip_l.pad_token == 49407
    assert clip.patcher.model.clip_l.transformer.text_model is clip.encoders[0]


def kohya_text_lora(clip: Any, rank: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(7)
    lora = {}
    for layer in ("mlp_fc1", "self_attn_q_proj"):
        module = "lora_te_text_model_encoder_layers_0_" + layer
        weight = clip.get_sd()[
            "clip_l.transformer.text_model.encoder.layers.0."
            + {"mlp_fc1": "mlp.fc1", "self_attn_q_proj": "self_attn.q_proj"}[layer]
            + ".weight"
        ]
        lora[f"{module}.lora_up.weight"] = torch.randn(weight.shape[0], rank, generator=generator)
        lora[f"{module}.lora_down.weight"] = torch.randn(rank, weight.shape[1], generator=generator)
        lora[f"{module}.alpha"] = torch.tensor(1.0)
    return lora


def test_comfy_lora_patches_equal_loras_loaded_by_loom(
    comfy: Any, sd_folders: Folders, tmp_path: Path
) -> None:
    sd, lora_module = comfy("comfy.sd"), comfy("comfy.lora")
    model, clip, _, _ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sd1"))
    lora = kohya_text_lora(clip)
    key_map = lora_module.model_lora_keys_clip(clip.cond_stage_model)
    patches = lora_module.load_lora(lora, key_map)
    assert sorted(patches) == [
        "clip_l.transformer.text_model.encoder.layers.0.mlp.fc1.weight",
        "clip_l.transformer.text_model.encoder.layers.0.self_attn.q_proj.weight",
    ]
    patched = clip.clone()
    assert sorted(patched.add_patches(patches, 0.8)) == sorted(patches)
    # ComfyUI's get_key_patches lists every weight; the patched ones carry their LoRA entry after the weight.
    key_patches = patched.get_key_patches()
    assert not clip.patches and len(key_patches) == len(clip.get_sd())
    assert sorted(k for k, v in key_patches.items() if len(v) > 1) == sorted(patches)

    save_file(lora, str(tmp_path / "l.safetensors"))
    _, by_loom = handles.apply_lora(tmp_path / "l.safetensors", model, clip, 0.0, 0.8)
    _, by_pack = sd.load_lora_for_models(model, clip, lora, 0.0, 0.8)
    tokens = clip.tokenize("a red cat")
    reference = by_loom.encode_from_tokens(tokens)
    assert torch.equal(patched.encode_from_tokens(tokens), reference)
    assert torch.equal(by_pack.encode_from_tokens(tokens), reference)
    assert not torch.equal(clip.encode_from_tokens(tokens), reference)
    unet_keys = lora_module.model_lora_keys_unet(model.unet)
    assert (
        unet_keys["lora_unet_input_blocks_1_1_proj_in"] == "diffusion_model.input_blocks.1.1.proj_in.weight"
    )
    assert (
        unet_keys["lora_unet_down_blocks_0_attentions_0_proj_in"]
        == "diffusion_model.input_blocks.1.1.proj_in.weight"
    )


def test_load_clip_from_text_encoder_files(comfy: Any, sd_folders: Folders, tmp_path: Path) -> None:
    sd = comfy("comfy.sd")
    _, reference, _, _ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sdxl"))
    paths = []
    for name, encoder in zip(("clip_l", "clip_g"), reference.encoders, strict=True):
        state = {
            ("text_model." + k if not k.startswith(("text_model.", "text_projection")) else k): v
            for k, v in encoder.state_dict().items()
        }
        save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / f"{name}.safetensors"))
        paths.append(str(tmp_path / f"{name}.safetensors"))
    clip = sd.load_clip(list(reversed(paths)), embedding_directory=None)
    assert clip.family == "sdxl"
    tokens = clip.tokenize("a dog")
    assert torch.equal(clip.encode_from_tokens(tokens), reference.encode_from_tokens(tokens))
    from engine.models.errors import UnsupportedModelError

    with pytest.raises(UnsupportedModelError, match="clip_l, t5xxl"):  # Flux takes CLIP-L and T5-XXL
        sd.load_clip(paths, clip_type=sd.CLIPType.FLUX)


def test_vae_from_state_dict_and_its_layouts(comfy: Any, sd_folders: Folders) -> None:
    sd = comfy("comfy.sd")
    _, _, vae, _ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sd1"))
    state = vae.get_sd()
    assert "decoder.conv_in.weight" in state and "encoder.down.0.block.0.conv1.weight" in state
    rebuilt = sd.VAE(sd=state)
    latent = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    image = vae.decode(latent)
    assert image.shape == (1, 16, 16, 3) and float(image.min()) >= 0 and float(image.max()) <= 1
    assert torch.equal(rebuilt.decode(latent), image)
    pixels = torch.rand(2, 17, 21, 3, generator=torch.Generator().manual_seed(4))
    assert vae.encode(pixels).shape == (2, 4, 8, 10)  # cropped to the VAE's multiple of 2
    assert vae.encode_tiled(pixels, tile_x=64, tile_y=64, overlap=8).shape == (2, 4, 8, 10)
    direct = vae.vae.encode(pixels[:, :16, :20].movedim(-1, 1) * 2 - 1).latent_dist.mode()
    assert torch.equal(vae.encode(pixels[:, :16, :20]), direct)


def test_model_management_answers_from_loom_manager(comfy: Any, sd_folders: Folders) -> None:
    mm = comfy("comfy.model_management")
    _, _, vae, _ = comfy("comfy.sd").load_checkpoint_guess_config(checkpoint(sd_folders, "sd1"))
    mm.load_models_gpu([vae.patcher])
    mm.load_model_gpu(vae.patcher)
    assert vae.patcher.current_device == mm.get_torch_device()
    if mm.get_torch_device().type == "cpu":
        assert mm.vram_state == mm.VRAMState.DISABLED and mm.cpu_mode()
        assert mm.unet_dtype() == torch.float32 and not mm.should_use_fp16() and not mm.should_use_bf16()
    assert mm.vae_dtype() == vae.vae_dtype and mm.text_encoder_dtype() in (torch.float32, torch.float16)
    assert mm.cast_to_device(torch.ones(2), "cpu", torch.float16).dtype == torch.float16
    assert mm.module_size(torch.nn.Linear(4, 2)) == (8 + 2) * 4
    assert not mm.xformers_enabled() and mm.pytorch_attention_enabled()
    mm.unload_all_models()
    with pytest.raises(TypeError, match="no torch module"):
        mm.load_models_gpu([object()])


def test_utils_state_dicts_attributes_and_batches(comfy: Any, tmp_path: Path) -> None:
    utils = comfy("comfy.utils")
    state = {"model.a": torch.ones(1), "model.b": torch.zeros(2), "other": torch.ones(3)}
    renamed = utils.state_dict_prefix_replace(dict(state), {"model.": "m."})
    assert sorted(renamed) == ["m.a", "m.b", "other"]
    assert sorted(utils.state_dict_prefix_replace(dict(state), {"model.": ""}, filter_keys=True)) == [
        "a",
        "b",
    ]
    utils.save_torch_file(state, str(tmp_path / "s.safetensors"), metadata={"k": "v"})
    loaded, metadata = utils.load_torch_file(str(tmp_path / "s.safetensors"), return_metadata=True)
    assert metadata == {"k": "v"} and torch.equal(loaded["other"], state["other"])
    module = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert utils.get_attr(module, "0.weight") is module[0].weight
    utils.copy_to_param(module, "0.bias", torch.tensor([5.0, 6.0]))
    assert module[0].bias.tolist() == [5.0, 6.0]
    previous = utils.set_attr(module, "0.bias", torch.nn.Parameter(torch.zeros(2)))
    assert previous.tolist() == [5.0, 6.0] and module[0].bias.tolist() == [0.0, 0.0]
    assert utils.repeat_to_batch_size(torch.arange(2), 5).tolist() == [0, 1, 0, 1, 0]
    assert utils.resize_to_batch_size(torch.arange(5), 3).tolist() == [0, 2, 4]
    assert utils.resize_to_batch_size(torch.arange(2), 5).tolist() == [0, 0, 1, 1, 1]
    mask = utils.reshape_mask(torch.ones(1, 4, 4), (2, 3, 8, 8))
    assert mask.shape == (2, 3, 8, 8)
    signal = torch.randn(1, 2, 50)
    doubled = utils.tiled_scale_multidim(
        signal, lambda x: x.repeat_interleave(2, -1), tile=(16,), overlap=4, upscale_amount=2, out_channels=2
    )
    assert torch.allclose(doubled, signal.repeat_interleave(2, -1), atol=1e-6)


def test_ops_cli_args_and_sd1_clip_helpers(comfy: Any, loom_folders: Folders) -> None:
    ops, cli_args, sd1_clip = comfy("comfy.ops"), comfy("comfy.cli_args"), comfy("comfy.sd1_clip")
    layer = ops.manual_cast.Linear(4, 3).to(torch.float16)  # left uninitialised: weights come from a file
    with torch.no_grad():
        layer.weight.copy_(torch.randn(3, 4))
        layer.bias.copy_(torch.randn(3))
    x = torch.randn(2, 4)
    assert layer(x).dtype == torch.float32
    assert torch.allclose(layer(x), torch.nn.functional.linear(x, layer.weight.float(), layer.bias.float()))
    assert isinstance(ops.disable_weight_init.Conv2d(3, 4, 3), torch.nn.Conv2d)
    assert cli_args.args.output_directory == str(loom_folders.output)
    assert cli_args.args.preview_method == cli_args.LatentPreviewMethod.Latent2RGB
    assert cli_args.args.disable_metadata is False and cli_args.args.preview_size == 512
    assert sd1_clip.token_weights(sd1_clip.escape_important("a (b:1.2) \\(c\\)"), 1.0) == [
        ("a ", 1.0),
        ("b", 1.2),
        (" \0\2c\0\1", 1.0),
    ]
    assert sd1_clip.parse_parentheses("x (y (z)) w") == ["x ", "(y (z))", " w"]
    assert sd1_clip.unescape_important("\0\2c\0\1") == "(c)"


def test_cond_stage_model_as_advanced_encode_packs_use_it(comfy: Any, sd_folders: Folders) -> None:
    """What prompt-blending packs do: isinstance on the model class, their own layer option, the
    patcher loaded, then each encoder's `encode_token_weights` on its windows."""
    sd, sdxl_clip, mm = comfy("comfy.sd"), comfy("comfy.sdxl_clip"), comfy("comfy.model_management")
    _, base, _, _ = sd.load_checkpoint_guess_config(checkpoint(sd_folders, "sdxl"))
    clip = base.clone()
    clip.clip_layer(-1)
    clip.add_patches(
        comfy("comfy.lora").load_lora(
            kohya_xl_lora(clip), comfy("comfy.lora").model_lora_keys_clip(clip.cond_stage_model)
        )
    )
    model = clip.cond_stage_model
    assert isinstance(model, sdxl_clip.SDXLClipModel) and isinstance(model.clip_g, sdxl_clip.SDXLClipG)
    assert not isinstance(model, comfy("comfy.sd1_clip").SD1ClipModel)
    assert model is clip.cond_stage_model and model is not base.cond_stage_model

    tokens = clip.tokenize("a (blue:1.2) cat")
    model.set_clip_options({"layer": clip.layer_idx})
    mm.load_model_gpu(clip.patcher)
    l_cond, _ = model.clip_l.encode_token_weights(tokens["l"])
    g_cond, g_pooled = model.clip_g.encode_token_weights(tokens["g"])
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    assert torch.equal(torch.cat([l_cond, g_cond], dim=-1), cond) and torch.equal(g_pooled, pooled)
    assert torch.equal(model.encode_token_weights(tokens)[0], cond)
    assert not torch.equal(base.encode_from_tokens(tokens), cond)  # the base CLIP: no LoRA, layer -2
    model.reset_clip_options()
    assert model.clip_l.layer == "hidden" and model.clip_l.layer_idx == -2


def kohya_xl_lora(clip: Any) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(8)
    lora = {}
    for prefix, key in (("lora_te1_", "clip_l"), ("lora_te2_", "clip_g")):
        weight = clip.get_sd()[f"{key}.transformer.text_model.encoder.layers.1.mlp.fc2.weight"]
        name = prefix + "text_model_encoder_layers_1_mlp_fc2"
        lora[f"{name}.lora_up.weight"] = torch.randn(weight.shape[0], 2, generator=generator)
        lora[f"{name}.lora_down.weight"] = torch.randn(2, weight.shape[1], generator=generator)
    return lora


def test_calculate_weight_applies_comfy_patch_entries(comfy: Any) -> None:
    lora = comfy("comfy.lora")
    generator = torch.Generator().manual_seed(9)
    weight = torch.randn(6, 4, generator=generator)
    up, down = torch.randn(6, 2, generator=generator), torch.randn(2, 4, generator=generator)
    diff = torch.randn(6, 4, generator=generator)
    lora_patch = (0.7, ("lora", (up, down, 1.0, None, None)), 1.0, None, None)
    out = lora.calculate_weight([lora_patch], weight.clone(), "w")
    assert torch.equal(out, weight + (0.7 * 1.0 / 2) * (up @ down))  # strength * alpha / rank
    out = lora.calculate_weight([(0.5, (diff,), 2.0, None, None)], weight.clone(), "w")
    assert torch.allclose(out, weight * 2.0 + 0.5 * diff)
    out = lora.calculate_weight([(1.0, ("set", (diff,)), 1.0, None, None)], weight.clone(), "w")
    assert torch.equal(out, diff)
    out = lora.calculate_weight([(1.0, ("diff", (diff[:2],)), 1.0, (0, 1, 2), None)], weight.clone(), "w")
    assert torch.equal(out[1:3], weight[1:3] + diff[:2]) and torch.equal(out[0], weight[0])
    with pytest.raises(ValueError, match="DoRA"):
        lora.calculate_weight(
            [(1.0, ("lora", (up, down, 1.0, None, torch.ones(6))), 1.0, None, None)], weight, "w"
        )
