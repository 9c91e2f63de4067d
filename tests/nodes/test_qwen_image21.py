"""Qwen-Image 2.1 on tiny stand-ins in ComfyUI's layouts: detection, int8 ConvRot dequantisation, the model
call against diffusers' own transformer, the RGBA VAE, text-to-image end to end and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.qwen21_fixtures import dequantised_model, edit_workflow, t2i_workflow, write_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("qwen21_models")
    return root, write_files(root)


def _use(folders: Folders, root: Path) -> Folders:
    folders.models = Folders.under(root.parent, models_base=root).models
    return folders


def test_detection_and_config(models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models import flow_families, qwen_image21

    shapes = {k: tuple(v.shape) for k, v in models[1]["transformer_state"].items()}
    for prefix in ("", "model.diffusion_model."):
        found = flow_families.detect({prefix + k: v for k, v in shapes.items()})
        assert found is not None and (found.family, found.prefix) == ("qwen_image21", prefix)
    config = qwen_image21.transformer_config(shapes, "")
    assert (config["num_layers"], config["mlp_ratio"], config["context_in_dim"]) == (2, 3, 32)
    sampling = flow_families.default_sampling(found)  # newer ComfyUI's: Flux-type, shift 0.69 read as mu
    assert type(sampling).__name__ == "ModelSamplingFlux" and sampling.shift == pytest.approx(0.69)


def test_int8_convrot_dequantises_to_the_rotated_weights() -> None:
    from engine.models.int8_convrot import Dequantised, hadamard
    from tests.nodes.qwen21_fixtures import quantise_convrot

    h = hadamard(16)
    assert torch.allclose(h @ h, torch.eye(16), atol=1e-6) and torch.equal(h, h.T)
    weight = torch.randn(8, 32)
    state = quantise_convrot({"transformer_blocks.0.attn.to_q.weight": weight, "other": torch.ones(2)})
    view = Dequantised(state, torch.float32)
    assert sorted(view) == ["other", "transformer_blocks.0.attn.to_q.weight"]
    restored = view["transformer_blocks.0.attn.to_q.weight"]
    assert (restored - weight).abs().max() <= weight.abs().max() / 127


def test_unknown_quantisation_is_refused_by_name() -> None:
    from engine.models.errors import UnsupportedModelError
    from engine.models.int8_convrot import Dequantised

    record = torch.tensor(list(b'{"format": "nvfp4"}'), dtype=torch.uint8)
    state = {
        "a.weight": torch.zeros(2, 2, dtype=torch.int8),
        "a.weight_scale": torch.ones(2, 1),
        "a.comfy_quant": record,
    }
    with pytest.raises(UnsupportedModelError, match=r"a\.weight: quantised as 'nvfp4'"):
        Dequantised(state, torch.float32)["a.weight"]


def test_model_call_matches_diffusers(models: tuple[Path, dict[str, Any]]) -> None:
    """Loom's loaded MODEL (from the int8 file) against diffusers' transformer on the same weights."""
    from engine.models import flow_families

    root, built = models
    patcher = flow_families.load_diffusion_model(
        root / "diffusion_models" / "qwen_image_2.1_int8_convrot.safetensors"
    )
    reference = dequantised_model(
        {
            k: v.to(torch.bfloat16).float() if v.is_floating_point() else v
            for k, v in built["transformer_state"].items()
        },
        41,
        32,
    )
    torch.manual_seed(3)
    x, context, sigma = torch.randn(1, 64, 4, 6), torch.randn(1, 7, 32), torch.tensor([0.7])
    denoised = patcher.model.apply_model(x, sigma, c_crossattn=context)
    loom_velocity = (x - denoised) / sigma
    tokens = x.flatten(2).transpose(1, 2)
    mask = torch.tensor([[False] * 7 + [True] * (24 // 4)])
    with torch.no_grad():
        out = reference(tokens, context, sigma, [[(1, 4, 6)]], mask, return_dict=False)[0]
    expected = out[:, -24:].transpose(1, 2).reshape(1, 64, 4, 6)
    assert (loom_velocity - expected).abs().max() < 1e-4


def test_text_to_image_end_to_end(
    executor: Executor, loom_folders: Folders, models: tuple[Path, dict[str, Any]]
) -> None:
    folders = _use(loom_folders, models[0])
    first = image_of(folders, run(executor, t2i_workflow(seed=2)), "9")
    executor.cache.clear()
    again = image_of(folders, run(executor, t2i_workflow(seed=2)), "9")
    other = image_of(folders, run(executor, t2i_workflow(seed=3)), "9")
    assert first.shape == (64, 64, 4) and first.std() > 0  # the VAE writes RGBA
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def _picture(folders: Folders, name: str = "input.png") -> None:
    from PIL import Image

    rng = np.random.default_rng(4)
    Image.fromarray(rng.integers(0, 255, (80, 48, 3), dtype=np.uint8)).save(folders.input / name)


def test_edit_with_an_input_image(
    executor: Executor, loom_folders: Folders, models: tuple[Path, dict[str, Any]]
) -> None:
    """The image goes through Qwen3-VL's vision tower and, as a reference latent, into the transformer's
    sequence at its slot (right after `<|vision_start|>`); the sampled latent takes the reference's size:
    at resolution 64 a 48×80 picture becomes 64×96 (multiples of 32), a 4×6 latent."""
    from engine.models import flow_families
    from engine.models.tokenizer import qwen
    from tests.nodes.harness import call

    folders = _use(loom_folders, models[0])
    _picture(folders)
    first = image_of(folders, run(executor, edit_workflow(seed=2)), "9")
    executor.cache.clear()
    again = image_of(folders, run(executor, edit_workflow(seed=2)), "9")
    assert first.shape == (96, 64, 4) and first.std() > 0 and np.array_equal(first, again)

    clip = flow_families.load_clip(
        [models[0] / "text_encoders" / "qwen3vl_8b_int8_convrot.safetensors"], "qwen_image"
    )
    image = torch.rand(1, 80, 48, 3)
    inputs = {"clip": clip, "prompt": "make it blue", "negative_prompt": ""}
    positive, _, latent = call(
        executor,
        "TextEncodeQwenImage21",
        **inputs,
        vae=_vae(models[0]),
        resolution=64,
        **{"images.image_1": image},
    )
    cond, options = positive[0]
    assert latent["samples"].shape == (1, 64, 6, 4)
    assert [tuple(r.shape) for r in options["reference_latents"]] == [(1, 64, 6, 4)]
    before = qwen.encode("<|im_start|>user\n<image1><|vision_start|>")
    after = qwen.encode("<|vision_end|>make it blue<|im_end|>\n<|im_start|>assistant\n")
    assert options["image_slots"] == [len(before)] and cond.shape[1] == len(before) + len(after)
    plain, _, _ = call(executor, "TextEncodeQwenImage21", **inputs)
    assert "image_slots" not in plain[0][1] and "reference_latents" not in plain[0][1]


def _vae(root: Path) -> Any:
    from safetensors.torch import load_file

    from engine.diffusion.vae import vae_from_state_dict

    path = root / "vae" / "qwen_image_2.1_vae_bf16.safetensors"
    return vae_from_state_dict(load_file(str(path)), {}, path.name)


def test_clear_errors(executor: Executor, models: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from engine.models import flow_families
    from tests.nodes.flow_fixtures_new import qwen_file_state, tiny_qwen
    from tests.nodes.harness import call

    text_only = tmp_path / "qwen3vl_text_only.safetensors"
    save_file(qwen_file_state(tiny_qwen("qwen3", 60)), str(text_only))
    clip = flow_families.load_clip([text_only], "qwen_image")
    with pytest.raises(
        Exception, match=r"TextEncodeQwenImage21: input 'images\.image_1' needs Qwen3-VL's vision"
    ):
        call(
            executor,
            "TextEncodeQwenImage21",
            clip=clip,
            prompt="x",
            negative_prompt="",
            **{"images.image_1": torch.rand(1, 32, 32, 3)},
        )
    zimage = flow_families.load_clip([text_only], "lumina2")
    with pytest.raises(Exception, match=r"TextEncodeQwenImage21: input 'clip' must be Qwen-Image 2\.1"):
        call(executor, "TextEncodeQwenImage21", clip=zimage, prompt="x", negative_prompt="")


def test_model_call_with_a_reference_matches_diffusers(models: tuple[Path, dict[str, Any]]) -> None:
    """A reference latent spliced into the text at its slot, against diffusers given the same sequence
    its way (the reference's vision slots in the text, condition images first)."""
    from engine.models import flow_families

    root, built = models
    patcher = flow_families.load_diffusion_model(
        root / "diffusion_models" / "qwen_image_2.1_int8_convrot.safetensors"
    )
    state = {
        k: v.to(torch.bfloat16).float() if v.is_floating_point() else v
        for k, v in built["transformer_state"].items()
    }
    reference = dequantised_model(state, 41, 32)
    torch.manual_seed(6)
    x, context, ref = torch.randn(1, 64, 4, 6), torch.randn(1, 9, 32), torch.randn(1, 64, 2, 6)
    sigma, slot = torch.tensor([0.4]), 5
    extra = {"ref_latents": [ref], "image_slots": [slot]}
    loom = (x - patcher.model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)) / sigma
    text = torch.cat([context[:, :slot], torch.zeros(1, 3, 32), context[:, slot:]], dim=1)
    mask = torch.tensor([[False] * slot + [True] * 3 + [False] * (9 - slot) + [True] * 6])
    tokens = torch.cat([ref.flatten(2).transpose(1, 2), x.flatten(2).transpose(1, 2)], dim=1)
    with torch.no_grad():
        out = reference(tokens, text, sigma, [[(1, 2, 6), (1, 4, 6)]], mask, return_dict=False)[0]
    assert (loom - out[:, -24:].transpose(1, 2).reshape(1, 64, 4, 6)).abs().max() < 1e-4


def test_sequence_layout_follows_comfyui() -> None:
    """Text, a reference of odd height (half a token off an even target), text, target: positions and the
    block-causal segments of the prefix."""
    from types import SimpleNamespace

    from engine.diffusion.flow_qwen21 import _sequence

    net = SimpleNamespace(img_in=lambda tokens: tokens[..., :2])
    x, ref, text = torch.zeros(1, 64, 2, 4), torch.zeros(1, 64, 3, 2), torch.zeros(1, 5, 2)
    tokens, ids, segments = _sequence(net, x, text, [ref], [2])
    assert tokens.shape[1] == 2 + 6 + 3 + 8
    assert segments == [(0, 2, True), (2, 8, False), (8, 11, True)]
    assert ids[:2].tolist() == [[0, 0, 0], [1, 1, 1]]
    assert ids[2].tolist() == [2, -1.5, -1.0] and ids[7].tolist() == [2, 0.5, 0.0]  # rows -1.5…0.5
    assert ids[8].tolist() == [5, 5, 5]  # text resumes after the reference's longer side (3)
    assert ids[11].tolist() == [8, -1, -2] and ids[-1].tolist() == [8, 0, 1]


def test_rgba_vae_tiles_and_keeps_alpha() -> None:
    """The RGBA VAE reports four image channels: tiled decoding fills RGBA tiles, an RGBA image's alpha
    reaches the encoder, and an RGB image is encoded as opaque."""
    from engine.diffusion.vae import vae_from_state_dict
    from tests.nodes.qwen21_fixtures import tiny_vae, vae_to_comfy

    vae = vae_from_state_dict(vae_to_comfy(tiny_vae(3).state_dict()), {}, "qwen_image_2.1_vae.safetensors")
    assert vae.output_channels == 4
    latent = torch.randn(1, 64, 12, 12, generator=torch.Generator().manual_seed(0))
    assert vae.decode_tiled(latent, tile_x=8, tile_y=8, overlap=1).shape == (1, 192, 192, 4)
    image = torch.rand(1, 64, 64, 4, generator=torch.Generator().manual_seed(1))
    opaque = image.clone()
    opaque[..., 3] = 1.0
    assert not torch.equal(vae.encode(image), vae.encode(opaque))
    assert torch.equal(vae.encode(opaque), vae.encode(opaque[..., :3]))
