"""Flux.2 Klein end to end on tiny stand-ins in ComfyUI's layouts: detection, loading through the split
loaders against diffusers' originals, the Qwen3 conditioning (layers 9, 18, 27 of the templated, padded
prompt), the template graph (text to image and an edit with ReferenceLatent), determinism, clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flux2_fixtures import (
    flux2_to_comfy,
    klein_workflow,
    tiny_flux2_transformer,
    tiny_tekken,
    write_flux2_dev_files,
    write_klein_files,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def klein_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("klein_models")
    made = write_klein_files(root)
    dev = write_flux2_dev_files(root)
    return root, made | {"dev_transformer": dev["transformer"], "mistral": dev["text"]}


@pytest.fixture
def klein_folders(loom_folders: Folders, klein_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(klein_models[0].parent, models_base=klein_models[0]).models
    return loom_folders


def test_detected_as_flux2_before_flux1_with_and_without_prefix() -> None:
    from engine.models import flow_families

    for guidance, variant in ((False, "Flux.2 Klein"), (True, "Flux.2 dev")):
        state = flux2_to_comfy(tiny_flux2_transformer(1, 96, guidance).state_dict())
        for prefix in ("", "model.diffusion_model."):
            detected = flow_families.detect({prefix + k: tuple(v.shape) for k, v in state.items()})
            assert detected is not None
            assert (detected.family, detected.prefix, detected.variant) == ("flux2", prefix, variant)


def test_split_loaders_match_the_diffusers_originals(klein_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import open_state_dict
    from engine.models.flow_families import load_diffusion_model

    root, made = klein_models
    model = load_diffusion_model(root / "diffusion_models" / "flux-2-klein-4b.safetensors")
    assert model.model.family == "flux2" and model.get_model_object("model_sampling").shift == 2.02
    assert model.model.model_config.unet_config["image_model"] == "flux2"
    x, context = torch.randn(1, 128, 3, 4), torch.randn(1, 512, 96)
    sigma = torch.tensor([0.6])
    with torch.no_grad():
        denoised = model.model.apply_model(x, sigma, c_crossattn=context)
        ids = torch.zeros(12, 4)
        ids[:, 1], ids[:, 2] = torch.arange(12) // 4, torch.arange(12) % 4
        text_ids = torch.zeros(512, 4)
        text_ids[:, 3] = torch.arange(512)
        velocity = made["transformer"](
            hidden_states=x.flatten(2).transpose(1, 2),
            encoder_hidden_states=context,
            timestep=sigma,
            img_ids=ids,
            txt_ids=text_ids,
            return_dict=False,
        )[0]
    expected = x - 0.6 * velocity.transpose(1, 2).reshape(1, 128, 3, 4)
    assert (denoised - expected).abs().max() < 1e-3
    state, _ = open_state_dict(root / "vae" / "full_encoder_small_decoder.safetensors")
    vae = vae_from_state_dict(dict(state), {}, "small")
    assert vae.downscale_ratio == 16 and vae.latent_channels == 128
    image = torch.rand(1, 32, 48, 3)
    latent = vae.encode(image)
    assert latent.shape == (1, 128, 2, 3)
    reference = made["small_vae"].encode(image.movedim(-1, 1) * 2 - 1).latent_dist.mode()
    patched = reference.reshape(1, 32, 2, 2, 3, 2).permute(0, 1, 3, 5, 2, 4).reshape(1, 128, 2, 3)
    bn = made["small_vae"].bn
    normalised = (patched - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + 1e-4
    )
    assert (latent - normalised).abs().max() < 1e-4


def test_klein_conditioning_stacks_layers_9_18_27_of_the_padded_template(
    klein_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.models.flow_families import load_clip
    from engine.models.tokenizer import qwen

    root, made = klein_models
    clip = load_clip([root / "text_encoders" / "qwen_3_4b.safetensors"], "flux2")
    assert clip.family == "flux2" and clip.roles == ("qwen3_4b",)
    tokens = clip.tokenize("a (red:1.5) fox")
    ids = [pair[0] for pair in tokens["qwen3_4b"][0]]
    template = "<|im_start|>user\na (red:1.5) fox<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    real = qwen.encode(template)
    assert ids == real + [qwen.PAD_ID] * (512 - len(real))
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    mask = torch.tensor([[1] * len(real) + [0] * (512 - len(real))])
    with torch.no_grad():
        hidden = made["text"].float()(torch.tensor([ids]), attention_mask=mask).hidden_states
    expected = torch.cat([hidden[9], hidden[18], hidden[27]], dim=-1)
    assert pooled is None and cond.shape == (1, 512, 96)
    assert (cond - expected.to(torch.bfloat16).float()).abs().max() < 0.05


def test_text_to_image_runs_and_repeats(executor: Executor, klein_folders: Folders) -> None:
    first = image_of(klein_folders, run(executor, klein_workflow(seed=3)), "14")
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(klein_folders, run(executor, klein_workflow(seed=3)), "14")
    other = image_of(klein_folders, run(executor, klein_workflow(seed=4)), "14")
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_edit_with_reference_latent_changes_the_image(executor: Executor, klein_folders: Folders) -> None:
    plain = image_of(klein_folders, run(executor, klein_workflow(seed=3, cfg=2.0)), "14")
    edited = image_of(klein_folders, run(executor, klein_workflow(seed=3, cfg=2.0, edit=True)), "14")
    assert edited.shape == plain.shape and not np.array_equal(plain, edited)


def test_reference_tokens_sit_in_frame_10_and_only_image_tokens_come_back(
    klein_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.models.flow_families import load_diffusion_model

    root, _ = klein_models
    model = load_diffusion_model(root / "diffusion_models" / "flux-2-klein-4b.safetensors").model
    seen: dict[str, Any] = {}
    handle = model.diffusion_model.register_forward_pre_hook(
        lambda _m, _a, kwargs: seen.update(kwargs), with_kwargs=True
    )
    x, reference = torch.randn(1, 128, 2, 2), torch.randn(1, 128, 1, 3)
    extra = model.added_conditions([{"reference_latents": [reference]}], x, 1)
    with torch.no_grad():
        out = model.apply_model(
            x, torch.tensor([0.5]), c_crossattn=torch.randn(1, 7, 96), added_cond_kwargs=extra
        )
    handle.remove()
    assert out.shape == x.shape
    assert seen["hidden_states"].shape == (1, 4 + 3, 128) and seen["encoder_hidden_states"].shape[1] == 512
    assert seen["img_ids"][4:, 0].eq(10).all() and seen["img_ids"][:4, 0].eq(0).all()


def test_conditioning_of_another_family_is_refused_by_name(klein_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_diffusion_model

    root, _ = klein_models
    model = load_diffusion_model(root / "diffusion_models" / "flux-2-klein-4b.safetensors").model
    with pytest.raises(ValueError, match="CLIPLoader type flux2"):
        model.apply_model(torch.randn(1, 128, 2, 2), torch.tensor([0.5]), c_crossattn=torch.randn(1, 7, 64))


def test_a_shallow_text_encoder_is_refused_with_the_layers_it_lacks(tmp_path: Path) -> None:
    from engine.models.flow_families import load_clip
    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import qwen_file_state, tiny_qwen

    path = tmp_path / "qwen_3_4b.safetensors"
    _save(path, qwen_file_state(tiny_qwen("qwen3", 5)), None)
    clip = load_clip([path], "flux2")
    with pytest.raises(
        ValueError, match=r"has 2 layers, but its family reads the hidden states of layers 9, 18, 27"
    ):
        clip.encode_from_tokens(clip.tokenize("hi"))


def test_flux2_scheduler_matches_the_released_schedule() -> None:
    from engine.sampling.flux2_schedule import empirical_mu, flux2_sigmas

    sigmas = flux2_sigmas(4, 1024, 1024)
    mu = empirical_mu(4096, 4)
    t = torch.linspace(1, 0, 5)
    expected = torch.exp(torch.tensor(mu)) / (torch.exp(torch.tensor(mu)) + (1 / t - 1))
    assert sigmas.shape == (5,) and sigmas[0] == 1.0 and sigmas[-1] == 0.0
    assert torch.allclose(sigmas, expected)
    assert empirical_mu(5000, 4) == pytest.approx(0.00016927 * 5000 + 0.45666666)


def tekken_reference(tekken: bytes, text: str) -> list[int]:
    """Mistral's tekken encoding written from its definition (tiktoken's): control tokens by name, the
    rest split by the file's pattern, each piece's bytes merged pairwise, lowest merged rank first; a BPE
    token's id is its rank after the special ids."""
    import base64
    import json

    import regex

    data = json.loads(tekken)
    specials = {entry["token_str"]: entry["rank"] for entry in data["special_tokens"]}
    ranks = {base64.b64decode(entry["token_bytes"]): entry["rank"] for entry in data["vocab"]}
    offset = data["config"]["default_num_special_tokens"]
    names = sorted(specials, key=len, reverse=True)
    ids: list[int] = []
    for part in regex.split("(" + "|".join(map(regex.escape, names)) + ")", text):
        if part in specials:
            ids.append(specials[part])
            continue
        for piece in regex.findall(data["config"]["pattern"], part):
            parts = [bytes([b]) for b in piece.encode()]
            while len(parts) > 1:
                merges = [
                    (ranks[parts[i] + parts[i + 1]], i)
                    for i in range(len(parts) - 1)
                    if parts[i] + parts[i + 1] in ranks
                ]
                if not merges:
                    break
                _, i = min(merges)
                parts[i : i + 2] = [parts[i] + parts[i + 1]]
            ids.extend(offset + ranks[p] for p in parts)
    return ids


@pytest.mark.parametrize(
    "prompt",
    ["a red circle on white", "The fox's 12345 actions\n\nwithout  speculation!", "café 猫 [INST] ok", ""],
)
def test_mistral_tokens_match_tekken_encoding_token_for_token(
    klein_models: tuple[Path, dict[str, Any]], prompt: str
) -> None:
    from engine.diffusion.tokens_flux2 import MISTRAL_TEMPLATE
    from engine.models.flow_families import load_clip

    root, _ = klein_models
    clip = load_clip([root / "text_encoders" / "mistral_3_small_flux2_bf16.safetensors"], "flux2")
    ids = [pair[0] for pair in clip.tokenize(prompt)["mistral3_24b"][0]]
    assert ids == [1, *tekken_reference(tiny_tekken(), MISTRAL_TEMPLATE.format(prompt))]


def test_flux2_dev_conditioning_stacks_layers_10_20_30(klein_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_clip

    root, made = klein_models
    clip = load_clip([root / "text_encoders" / "mistral_3_small_flux2_bf16.safetensors"], "flux2")
    tokens = clip.tokenize("a red fox")
    ids = [pair[0] for pair in tokens["mistral3_24b"][0]]
    cond = clip.encode_from_tokens(tokens)
    with torch.no_grad():
        hidden = made["mistral"].float()(torch.tensor([ids])).hidden_states
    expected = torch.cat([hidden[10], hidden[20], hidden[30]], dim=-1)
    assert cond.shape == (1, len(ids), 96)
    assert (cond - expected.to(torch.bfloat16).float()).abs().max() < 0.05


def test_flux2_dev_text_to_image_with_flux_guidance(executor: Executor, klein_folders: Folders) -> None:
    def dev(guidance: float) -> dict[str, Any]:
        prompt = klein_workflow(seed=3)
        prompt["1"]["inputs"]["unet_name"] = "flux2_dev.safetensors"
        prompt["2"]["inputs"]["clip_name"] = "mistral_3_small_flux2_bf16.safetensors"
        prompt["24"] = {
            "class_type": "FluxGuidance",
            "inputs": {"conditioning": ["5", 0], "guidance": guidance},
        }
        prompt["11"] = {"class_type": "BasicGuider", "inputs": {"model": ["1", 0], "conditioning": ["24", 0]}}
        return prompt

    low = image_of(klein_folders, run(executor, dev(1.0)), "14")
    high = image_of(klein_folders, run(executor, dev(4.0)), "14")
    assert low.shape == (48, 64, 3) and low.std() > 0 and not np.array_equal(low, high)


def test_mistral_file_without_its_tokenizer_is_refused_by_name(tmp_path: Path) -> None:
    from engine.models.flow_families import load_clip
    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import qwen_file_state
    from tests.nodes.flux2_fixtures import tiny_mistral_text_encoder

    path = tmp_path / "mistral.safetensors"
    _save(path, qwen_file_state(tiny_mistral_text_encoder(7)), None)
    clip = load_clip([path], "flux2")
    with pytest.raises(ValueError, match="no `tekken_model` tensor"):
        clip.tokenize("hi")


def test_kv_cache_extracts_once_and_cached_calls_give_the_same_prediction(
    klein_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.diffusion.flow_flux2 import KV_OPTION, ReferenceKVCache
    from engine.models.flow_families import load_diffusion_model

    root, _ = klein_models
    model = load_diffusion_model(root / "diffusion_models" / "flux-2-klein-4b.safetensors").model
    torch.manual_seed(0)
    x, context, reference = torch.randn(1, 128, 2, 3), torch.randn(1, 9, 96), torch.randn(1, 128, 2, 2)
    extra = model.added_conditions([{"reference_latents": [reference]}], x, 1)
    store = ReferenceKVCache()
    options = {KV_OPTION: store}
    sigma = torch.tensor([0.5])
    with torch.no_grad():
        first = model.apply_model(
            x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
        )
        again = model.apply_model(
            x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
        )
        plain = model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)
    assert len(store.entries) == 1
    assert (first - again).abs().max() < 1e-5
    assert (first - plain).abs().max() > 1e-4  # references attend only to themselves, at timestep 0


def test_kv_cache_node_runs_the_kv_edit_and_refuses_other_models(
    executor: Executor, klein_folders: Folders
) -> None:
    prompt = klein_workflow(seed=3, edit=True)
    prompt["30"] = {"class_type": "FluxKVCache", "inputs": {"model": ["1", 0]}}
    prompt["11"]["inputs"]["model"] = ["30", 0]
    image = image_of(klein_folders, run(executor, prompt), "14")
    assert image.shape == (48, 64, 3) and np.isfinite(image).all()
    from nodes.model_patches.flux_kv_cache import FluxKVCache

    with pytest.raises(ValueError, match=r"FluxKVCache: input 'model' must be a Flux\.2 model"):
        FluxKVCache().run(type("Other", (), {"model": object()})())


def test_comfy_fp8mixed_weights_are_read_with_their_scales(tmp_path: Path) -> None:
    import json

    from engine.models.flow_families import load_diffusion_model
    from tests.nodes.flow_fixtures import _save

    original = tiny_flux2_transformer(8, 96)
    state = flux2_to_comfy(original.state_dict())
    for key in [k for k in state if k.startswith("double_blocks.0.") and k.endswith(".weight")]:
        weight = state[key]
        scale = weight.abs().max() / 448.0
        state[key] = (weight / scale).to(torch.float8_e4m3fn)
        stem = key.removesuffix(".weight")
        state[stem + ".weight_scale"] = scale.reshape(())
        state[stem + ".input_scale"] = torch.tensor(1.0)
        marker = json.dumps({"format": "float8_e4m3fn"}).encode()
        state[stem + ".comfy_quant"] = torch.frombuffer(bytearray(marker), dtype=torch.uint8)
    path = tmp_path / "flux-2-klein-4b-fp8mixed.safetensors"
    _save(path, state, None)
    model = load_diffusion_model(path).model
    x, context = torch.randn(1, 128, 2, 2), torch.randn(1, 512, 96)
    with torch.no_grad():
        loaded = model.apply_model(x, torch.tensor([0.5]), c_crossattn=context)
        ids = torch.zeros(4, 4)
        ids[:, 1], ids[:, 2] = torch.arange(4) // 2, torch.arange(4) % 2
        text_ids = torch.zeros(512, 4)
        text_ids[:, 3] = torch.arange(512)
        velocity = original(
            hidden_states=x.flatten(2).transpose(1, 2),
            encoder_hidden_states=context,
            timestep=torch.tensor([0.5]),
            img_ids=ids,
            txt_ids=text_ids,
            return_dict=False,
        )[0]
    expected = x - 0.5 * velocity.transpose(1, 2).reshape(1, 128, 2, 2)
    # fp8 keeps about two significant digits: close to the original, far from the unscaled fp8 values
    assert (loaded - expected).abs().max() < 0.1 * expected.abs().max()


@pytest.mark.parametrize("name", ["diffusion_model.{base}", "lora_unet_{flat}"])
def test_reference_layout_lora_equals_the_baked_file(tmp_path: Path, name: str) -> None:
    from safetensors.torch import save_file

    from tests.nodes.test_flow_lora import _baked, _file, _lora, _weights

    state = flux2_to_comfy(tiny_flux2_transformer(2, 96).state_dict())
    bases = [
        "double_blocks.0.img_attn.qkv",
        "double_blocks.0.txt_mlp.0",
        "single_blocks.0.linear1",
        "final_layer.adaLN_modulation.1",
        "double_stream_modulation_img.lin",
    ]
    lora = _lora(state, bases, seed=7)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "base.safetensors"))
    baked_state = {k: v.contiguous() for k, v in _baked(state, lora, 0.8).items()}
    save_file(baked_state, str(tmp_path / "baked.safetensors"))
    patched = _weights(tmp_path / "base.safetensors", _file(lora, name), 0.8)
    baked = _weights(tmp_path / "baked.safetensors", None, 1.0)
    plain = _weights(tmp_path / "base.safetensors", None, 1.0)
    changed = [k for k in plain if not torch.equal(plain[k], baked[k])]
    assert changed and all(torch.allclose(patched[k], baked[k], atol=1e-5) for k in plain)


def test_dit_block_replacements_run_on_both_block_kinds(klein_models: tuple[Path, dict[str, Any]]) -> None:
    """A "dit" replacement (SkipLayerGuidanceDiT's mechanism) on Flux.2's double and single blocks: one that
    runs the original block keeps the prediction, one that skips a single block changes it. (Flux.2's
    single blocks take text and image as one sequence: the replacement must hand back one tensor.)"""
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(klein_models[0] / "diffusion_models" / "flux-2-klein-4b.safetensors").model
    torch.manual_seed(0)
    x, context, sigma = torch.randn(1, 128, 2, 3), torch.randn(1, 9, 96), torch.tensor([0.5])

    def predict(replacements: dict[tuple[str, int], Any]) -> torch.Tensor:
        options = {"patches_replace": {"dit": replacements}}
        extra = model.added_conditions([{}], x, 1)
        with torch.no_grad():
            return model.apply_model(
                x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
            )

    def keep(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return extra["original_block"](args)

    def skip(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {"img": args["img"]}

    plain = predict({})
    kept = predict({("double_block", 0): keep, ("single_block", 0): keep})
    skipped = predict({("single_block", 0): skip})
    assert torch.equal(plain, kept)
    assert (plain - skipped).abs().max() > 1e-4
