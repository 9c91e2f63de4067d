"""Qwen-Image Edit on tiny stand-ins: Qwen2.5-VL's vision tower loaded from the text-encoder file, the
image in the prompt against transformers' Qwen2.5-VL as diffusers' edit pipeline calls it, reference
latents in the transformer against diffusers' edit pipeline's call, and ComfyUI_examples' edit graph end
to end (repeatable, and the input image changes the result)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures_new import tiny_qwen, write_qwen_image_files
from tests.nodes.qwen_edit_fixtures import processor, qwen25_vl_from_file, qwen_edit_workflow, random_picture
from tests.nodes.test_sd_nodes import image_of, run

TEXT_ENCODER = "qwen_2.5_vl_7b_fp8_scaled.safetensors"
DROP = 64  # diffusers' edit pipeline drops the system prompt's 64 tokens, as ComfyUI trims it


@pytest.fixture(scope="module")
def qwen_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("qwen_edit_models")
    return root, write_qwen_image_files(root)


@pytest.fixture(scope="module")
def clip(qwen_models: tuple[Path, dict[str, Any]]) -> Any:
    from engine.models.flow_families import load_clip

    return load_clip([qwen_models[0] / "text_encoders" / TEXT_ENCODER], "qwen_image")


def _use(folders: Folders, root: Path) -> Folders:
    folders.models = Folders.under(root.parent, models_base=root).models
    return folders


def test_vision_tower_loads_from_the_text_encoder_file(
    clip: Any, qwen_models: tuple[Path, dict[str, Any]]
) -> None:
    visual = clip.encoders[0].visual
    reference = qwen_models[1]["vision"].state_dict()
    assert visual is not None and visual.config.depth == 2 and visual.config.out_hidden_size == 128
    assert visual.config.num_heads == 1 and visual.config.spatial_merge_size == 2
    for key, value in visual.state_dict().items():
        assert torch.equal(value, reference[key].to(torch.bfloat16).float()), key


def test_image_prompt_matches_transformers_qwen25_vl(
    clip: Any, qwen_models: tuple[Path, dict[str, Any]]
) -> None:
    """The prompt with an image (112×168: already on the 28-pixel grid, so no resampling differs) equals
    the last hidden state of transformers' Qwen2.5-VL fed by Qwen2-VL's processor, from token 64 on, as
    diffusers' QwenImageEditPipeline reads it — with the multimodal positions, which that pipeline only
    gets when `mm_token_type_ids` reaches the model (transformers 5 needs it for them)."""
    from diffusers import QwenImageEditPipeline

    picture, image = random_picture(168, 112, seed=3)
    tokens = clip.tokenize("make it blue", images=[image])
    window = tokens["qwen25_7b"][0]
    assert sum(isinstance(pair[0], dict) for pair in window) == 1
    cond = clip.encode_from_tokens(tokens)

    reference = qwen25_vl_from_file(qwen_models[0] / "text_encoders" / TEXT_ENCODER)
    pipe = QwenImageEditPipeline(None, None, None, None, None, None)  # type: ignore[arg-type]
    text = pipe.prompt_template_encode.format("make it blue")
    inputs = processor()(text=[text], images=[picture], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = reference(**inputs, output_hidden_states=True)
    expected = out.hidden_states[-1][:, DROP:]
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 12]]
    assert cond.shape == expected.shape == (1, expected.shape[1], 128)
    assert torch.allclose(cond, expected, atol=1e-5)


def test_text_only_prompt_is_unchanged_by_the_vl_language_model(clip: Any) -> None:
    """Qwen2.5-VL's language model on text alone equals transformers' plain Qwen2 (1-D RoPE)."""
    reference = tiny_qwen("qwen25", 31, hidden=128).to(torch.bfloat16).float()
    tokens = clip.tokenize("a cat")
    ids = [pair[0] for pair in tokens["qwen25_7b"][0]]
    with torch.no_grad():
        full = reference(torch.tensor([ids])).last_hidden_state
    cond = clip.encode_from_tokens(tokens)
    assert torch.allclose(cond, full[:, -cond.shape[1] :], atol=1e-5)


@pytest.mark.parametrize("method", ["index", "index_timestep_zero"])
def test_reference_latents_enter_the_transformer_as_diffusers_edit_pipeline_does(
    qwen_models: tuple[Path, dict[str, Any]], method: str
) -> None:
    """Loom's prediction with a reference latent equals the transformer called as QwenImageEditPipeline
    calls it: packed latents then packed reference, img_shapes of both, the first part of the output
    (even token grids, where diffusers' rotary placement and ComfyUI's agree). index_timestep_zero
    (Qwen-Image Edit 2511) is diffusers' transformer built with `zero_cond_t`."""
    from diffusers import QwenImageEditPipeline
    from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope

    from engine.models.flow_families import load_diffusion_model

    patcher = load_diffusion_model(qwen_models[0] / "diffusion_models" / "qwen_image_bf16.safetensors")
    model = patcher.model
    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 8, 12), torch.tensor([0.6])
    reference, context = torch.randn(1, 16, 12, 8), torch.randn(1, 7, 128)
    entry = {"reference_latents": [reference], "reference_latents_method": method}
    extra = model.added_conditions([entry], x, 1)
    with torch.no_grad():
        denoised = model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)
        pack = QwenImageEditPipeline._pack_latents
        tokens = torch.cat([pack(x, 1, 16, 8, 12), pack(model.process_latent_in(reference), 1, 16, 12, 8)], 1)
        transformer = model.diffusion_model
        ours = transformer.pos_embed
        transformer.__dict__["pos_embed"] = QwenEmbedRope(10000, [16, 56, 56], scale_rope=True)
        for module in [transformer, *transformer.transformer_blocks]:
            module.zero_cond_t = method == "index_timestep_zero"
        try:
            velocity = transformer(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=sigma,
                img_shapes=[[(1, 4, 6), (1, 6, 4)]],
                return_dict=False,
            )[0][:, :24]
        finally:
            transformer.__dict__["pos_embed"] = ours
            for module in [transformer, *transformer.transformer_blocks]:
                module.zero_cond_t = False
        without = model.apply_model(x, sigma, c_crossattn=context)
    unpacked = velocity.reshape(1, 4, 6, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 8, 12)
    assert torch.allclose(denoised, x - sigma * unpacked, atol=1e-5)
    assert not torch.allclose(denoised, without, atol=1e-3)


def test_rotary_placement_is_comfyuis_on_odd_grids_and_larger_references() -> None:
    """ComfyUI centres a grid of n rows at arange(n) - n // 2 and starts the text after the generated
    image's larger half-size; the n-th image is at frame n (bench/qwen_edit_parity.py runs ComfyUI's
    own model against Loom's on such grids)."""
    from engine.models.qwen_image import CentredRope

    rope = CentredRope(10000, [16, 56, 56])
    images, text = rope([[(1, 3, 5), (1, 4, 8)]], max_txt_seq_len=2)
    main = [(0, r, c) for r in (-1, 0, 1) for c in (-2, -1, 0, 1, 2)]
    ref = [(1, r, c) for r in (-2, -1, 0, 1) for c in range(-4, 4)]
    expected = rope._freqs(torch.tensor(main + ref))
    assert torch.equal(images, expected)
    assert torch.equal(text, rope._freqs(torch.tensor([[2, 2, 2], [3, 3, 3]])))


def test_entries_with_and_without_reference_latents_are_predicted_apart(
    qwen_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.diffusion.guidance import calc_cond_batch, convert_cond
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(qwen_models[0] / "diffusion_models" / "qwen_image_bf16.safetensors").model
    torch.manual_seed(1)
    x, sigma, context = torch.randn(1, 16, 4, 4), torch.tensor([0.5]), torch.randn(1, 5, 128)
    reference = torch.randn(1, 16, 4, 4)
    cond = convert_cond([[context, {"reference_latents": [reference]}]])
    uncond = convert_cond([[context, {}]])
    with torch.no_grad():
        together = calc_cond_batch(model, [cond, uncond], x, sigma, {})
        extra = model.added_conditions(cond, x, 1)
        alone = [
            model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra),
            model.apply_model(x, sigma, c_crossattn=context),
        ]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(together, alone, strict=True))


class _RecordingVae:
    """Stands in for the VAE to see what the node encodes (the real encode runs in the graph test)."""

    def encode(self, pixels: Any) -> Any:
        self.pixels = pixels
        return torch.ones(1, 16, 2, 2)


def test_node_encodes_the_image_scaled_to_1mp_as_its_reference_latent(clip: Any) -> None:
    from nodes.conditioning.qwen import TextEncodeQwenImageEdit
    from nodes.image.basic import upscale

    vae = _RecordingVae()
    _, image = random_picture(32, 24, seed=4)
    [[cond, options]] = TextEncodeQwenImageEdit().run(clip, "add a hat", vae=vae, image=image)
    expected = upscale(image.movedim(-1, 1), 1182, 887, "area").movedim(1, -1)  # 1024² pixels, same aspect
    assert torch.equal(vae.pixels, expected)
    assert len(options["reference_latents"]) == 1 and options["reference_latents"][0].sum() == 64
    # The vision tower sees the same 1182×887 image on the 28-pixel grid: 1176×896, 42×32 tokens.
    plain = TextEncodeQwenImageEdit().run(clip, "add a hat")
    assert cond.shape[1] - plain[0][0].shape[1] == 42 * 32 + 2  # with <|vision_start|>, <|vision_end|>
    assert "reference_latents" not in plain[0][1]


def test_image_input_needs_the_vision_tower(tmp_path: Path, qwen_models: tuple[Path, dict[str, Any]]) -> None:
    from safetensors.torch import load_file, save_file

    from engine.models.flow_families import load_clip
    from nodes.conditioning.qwen import TextEncodeQwenImageEdit, TextEncodeQwenImageEditPlus

    state = load_file(str(qwen_models[0] / "text_encoders" / TEXT_ENCODER))
    path = tmp_path / "qwen_text_only.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("visual.")}, str(path))
    text_only = load_clip([path], "qwen_image")
    _, image = random_picture(28, 28, seed=5)
    with pytest.raises(
        ValueError, match=r"TextEncodeQwenImageEdit: input 'image' needs Qwen2\.5-VL's vision"
    ):
        TextEncodeQwenImageEdit().run(text_only, "x", image=image)
    with pytest.raises(ValueError, match="TextEncodeQwenImageEditPlus: input 'image2'"):
        TextEncodeQwenImageEditPlus().run(text_only, "x", image2=image)
    assert TextEncodeQwenImageEdit().run(text_only, "x")[0][0].shape[1] > 0


def test_plus_node_numbers_the_pictures(clip: Any) -> None:
    from engine.models.tokenizer import qwen
    from nodes.conditioning.qwen import TextEncodeQwenImageEditPlus

    _, first = random_picture(56, 56, seed=6)
    _, second = random_picture(84, 56, seed=7)
    one = TextEncodeQwenImageEditPlus().run(clip, "swap them", image1=first)
    two = TextEncodeQwenImageEditPlus().run(clip, "swap them", image1=first, image3=second)
    # 384² pixels: 84×56 → 470×314 → 476×308 on the 28-pixel grid → 17×11 tokens, after "Picture 3: ".
    picture = len(qwen.encode("Picture 3: "))
    assert two[0][0].shape[1] - one[0][0].shape[1] == picture + 1 + 17 * 11 + 1


def test_edit_example_graph_repeats_and_follows_the_input_image(
    executor: Executor, loom_folders: Folders, qwen_models: tuple[Path, dict[str, Any]]
) -> None:
    from PIL import Image

    folders = _use(loom_folders, qwen_models[0])
    Image.new("RGB", (48, 40), (230, 120, 20)).save(folders.input / "fox.png")
    Image.new("RGB", (48, 40), (20, 40, 200)).save(folders.input / "owl.png")
    first = image_of(folders, run(executor, qwen_edit_workflow(seed=3, image="fox.png")), "9")
    other_seed = image_of(folders, run(executor, qwen_edit_workflow(seed=4, image="fox.png")), "9")
    again = image_of(folders, run(executor, qwen_edit_workflow(seed=3, image="fox.png")), "9")
    other_image = image_of(folders, run(executor, qwen_edit_workflow(seed=3, image="owl.png")), "9")
    assert first.shape == (64, 64, 3) and first.std() > 0
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other_seed)
    assert not np.array_equal(first, other_image)


def test_fp8_scaled_text_encoder_is_unscaled_on_load(
    tmp_path: Path, clip: Any, qwen_models: tuple[Path, dict[str, Any]]
) -> None:
    """ComfyUI's `qwen_2.5_vl_7b_fp8_scaled`: fp8 matrices with a `scale_weight` each (and a
    `scaled_fp8` marker); the weights Loom uses are their products, so the prompt barely changes."""
    from safetensors.torch import load_file, save_file

    from engine.models.flow_families import load_clip

    state = load_file(str(qwen_models[0] / "text_encoders" / TEXT_ENCODER))
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(2, dtype=torch.float8_e4m3fn)}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2 and "embed_tokens" not in key:
            scale = value.float().abs().max() / 448.0
            scaled[key] = (value.float() / scale).to(torch.float8_e4m3fn)
            scaled[key.removesuffix("weight") + "scale_weight"] = scale.reshape(())
        else:
            scaled[key] = value
    path = tmp_path / TEXT_ENCODER
    save_file(scaled, str(path))
    fp8 = load_clip([path], "qwen_image")
    weight = fp8.encoders[0].model.layers[0].mlp.down_proj.weight
    original = clip.encoders[0].model.layers[0].mlp.down_proj.weight
    assert (weight - original).abs().max() <= original.abs().max() / 8
    _, image = random_picture(56, 56, seed=10)
    tokens = clip.tokenize("a hat", images=[image])
    assert torch.allclose(fp8.encode_from_tokens(tokens), clip.encode_from_tokens(tokens), atol=0.1)
