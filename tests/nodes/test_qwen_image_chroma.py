"""Qwen-Image and Chroma end to end on tiny stand-ins in ComfyUI's layouts: detection, conversion against
diffusers, their text encoders, the Wan-layout VAE, the example graphs, fp8 loading, determinism."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures_new import (
    chroma_to_comfy,
    chroma_workflow,
    qwen_image_workflow,
    tiny_chroma_transformer,
    tiny_qwen_image_transformer,
    write_chroma_files,
    write_qwen_image_files,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def qwen_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("qwen_models")
    return root, write_qwen_image_files(root)


@pytest.fixture(scope="module")
def chroma_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("chroma_models")
    return root, write_chroma_files(root)


def _use(folders: Folders, root: Path) -> Folders:
    folders.models = Folders.under(root.parent, models_base=root).models
    return folders


def test_detection_of_both_families() -> None:
    from engine.models import flow_families

    qwen = {k: tuple(v.shape) for k, v in tiny_qwen_image_transformer().state_dict().items()}
    chroma = {
        k: tuple(v.shape) for k, v in chroma_to_comfy(tiny_chroma_transformer().state_dict(), 1, 1).items()
    }
    for prefix in ("", "model.diffusion_model."):
        found = flow_families.detect({prefix + k: v for k, v in qwen.items()})
        assert found is not None and (found.family, found.prefix) == ("qwen_image", prefix)
        found = flow_families.detect({prefix + k: v for k, v in chroma.items()})
        assert found is not None and (found.family, found.prefix) == ("chroma", prefix)


def test_default_sampling_follows_comfyui(
    qwen_models: tuple[Path, dict[str, Any]], chroma_models: tuple[Path, dict[str, Any]]
) -> None:
    from engine.models.flow_families import load_diffusion_model
    from engine.sampling import sigmas_for
    from engine.sampling.model_sampling_flow import ModelSamplingFlux

    qwen = load_diffusion_model(qwen_models[0] / "diffusion_models" / "qwen_image_bf16.safetensors")
    chroma = load_diffusion_model(chroma_models[0] / "diffusion_models" / "chroma-unlocked-v35.safetensors")
    qwen_sampling, chroma_sampling = (m.get_model_object("model_sampling") for m in (qwen, chroma))
    assert isinstance(qwen_sampling, ModelSamplingFlux) and qwen_sampling.shift == 1.15
    assert isinstance(chroma_sampling, ModelSamplingFlux) and chroma_sampling.shift == 1.15
    # Qwen-Image's 1.15 is Flux's mu (ComfyUI 0.3.64 printed 1, 0.94047, 0.86334, ... for simple, 6 steps),
    # not a discrete-flow shift (which would give 1, 0.85246, ...): sigma = e^mu t / (1 + (e^mu - 1) t).
    t = torch.arange(6, -1, -1) / 6
    expected = math.exp(1.15) * t / (1 + (math.exp(1.15) - 1) * t)
    got = sigmas_for(qwen_sampling, "simple", 6, 1.0, "euler")
    assert torch.allclose(got.float(), expected.float(), atol=1e-4)
    assert abs(float(got[1]) - 0.94047) < 1e-4
    assert qwen.latent.channels == chroma.latent.channels == 16 and chroma.latent.scale_factor == 0.3611


def sinusoid(values: torch.Tensor, width: int) -> torch.Tensor:
    """ComfyUI's Flux-family embedding of `values` (already × 1000), written out: sinusoids of
    frequencies 10000^(-k/half), cosines first."""
    half = width // 2
    frequencies = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    angles = values.float()[:, None] * frequencies[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def comfy_modulation_index_table(count: int = 344, width: int = 32) -> torch.Tensor:
    """ComfyUI's Chroma modulation-index embeddings: index i × 1000."""
    return sinusoid(torch.arange(count) * 1000, width)


def test_chroma_transformer_matches_the_diffusers_original_with_comfyuis_modulation_indices() -> None:
    """A shallow Chroma: the blocks read the same modulation vectors as in diffusers, but the final layer
    reads the last two of ComfyUI's 344 (indices 342 and 343), not of the depth's own count (15 and 16)."""
    from engine.models import chroma

    model = tiny_chroma_transformer(seed=5)
    loaded = chroma.load_transformer(chroma_to_comfy(model.state_dict(), 1, 1), "", torch.float32)
    img_ids = torch.zeros(16, 3)
    img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    args = {
        "timestep": torch.tensor([0.6]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(5, 3),
        "return_dict": False,
    }
    tokens, context = torch.randn(1, 16, 64), torch.randn(1, 5, 192)
    with torch.no_grad():
        depth_sized = model(tokens, context, **args)[0]
        model.time_text_embed.register_buffer("mod_proj", comfy_modulation_index_table(), persistent=False)
        comfy_sized = model(tokens, context, **args)[0]
        ours = loaded(tokens, context, **args)[0]
    assert torch.allclose(ours, comfy_sized, atol=1e-6)
    assert not torch.allclose(ours, depth_sized, atol=1e-3)


def test_chroma_at_the_released_depth_keeps_its_modulation_indices() -> None:
    from accelerate import init_empty_weights
    from diffusers import ChromaTransformer2DModel

    from engine.models.chroma import match_modulation_indices

    with init_empty_weights(include_buffers=False):
        released = ChromaTransformer2DModel(num_layers=19, num_single_layers=38)
    table = released.time_text_embed.mod_proj
    match_modulation_indices(released)
    assert released.time_text_embed.mod_proj is table
    assert torch.allclose(table, comfy_modulation_index_table(), atol=1e-5)


def test_chroma_embeds_the_conditioning_guidance_as_comfyui(tmp_path: Path) -> None:
    """FluxGuidance on Chroma conditioning: ComfyUI embeds the value (× 1000, as the timestep) in the
    approximator's guidance columns, where diffusers' model has a fixed 0; unset means 0."""
    from safetensors.torch import save_file

    from engine.models.flow_families import load_diffusion_model

    model = tiny_chroma_transformer(seed=6)
    path = tmp_path / "chroma.safetensors"
    save_file({k: v.contiguous() for k, v in chroma_to_comfy(model.state_dict(), 1, 1).items()}, str(path))
    loom = load_diffusion_model(path).model
    x, sigma, context = torch.randn(1, 16, 8, 8), torch.tensor([0.6]), torch.randn(1, 5, 192)

    def denoised(extra: dict[str, Any] | None) -> torch.Tensor:
        with torch.no_grad():
            return loom.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)

    def reference(guidance: float) -> torch.Tensor:
        def embed_guidance(module: Any, args: Any, output: torch.Tensor) -> torch.Tensor:
            output = output.clone()
            output[:, :, 16:32] = sinusoid(torch.tensor([guidance * 1000]), 16)
            return output

        model.time_text_embed.register_buffer("mod_proj", comfy_modulation_index_table(), persistent=False)
        hook = model.time_text_embed.register_forward_hook(embed_guidance)
        tokens = x.reshape(1, 16, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, 64)
        img_ids = torch.zeros(16, 3)
        img_ids[:, 1], img_ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
        with torch.no_grad():
            velocity = model(
                tokens, context, timestep=sigma, img_ids=img_ids, txt_ids=torch.zeros(5, 3), return_dict=False
            )[0]
        hook.remove()
        velocity = velocity.reshape(1, 4, 4, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 8, 8)
        return x - sigma * velocity

    unset = denoised(None)
    assert torch.equal(denoised({"guidance": torch.tensor([0.0])}), unset)
    assert torch.allclose(unset, reference(0.0), atol=1e-5)
    guided = denoised({"guidance": torch.tensor([3.5])})
    assert torch.allclose(guided, reference(3.5), atol=1e-5)
    assert not torch.allclose(guided, unset, atol=1e-3)


def test_qwen_vae_round_trips_through_the_wan_layout(qwen_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import load_state_dict

    root, made = qwen_models
    state, _ = load_state_dict(root / "vae" / "qwen_image_vae.safetensors")
    vae = vae_from_state_dict(state, {}, "qwen_image_vae.safetensors")
    assert vae.latent_channels == 16 and vae.downscale_ratio == 8
    latent = torch.randn(1, 16, 4, 4)
    reference = made["vae"].to(torch.bfloat16).float()
    with torch.no_grad():
        expected = reference.decode(latent.unsqueeze(2)).sample[:, :, 0]
    pixels = vae.decode(latent)
    assert pixels.shape == (1, 32, 32, 3)
    assert torch.allclose(pixels, ((expected + 1) / 2).clamp(0, 1).movedim(1, -1), atol=2e-3)
    assert vae.encode(pixels).shape == (1, 16, 4, 4)


def test_qwen_text_encoder_drops_the_system_prompt(qwen_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_clip
    from engine.models.tokenizer import qwen

    root, made = qwen_models
    clip = load_clip([root / "text_encoders" / "qwen_2.5_vl_7b_fp8_scaled.safetensors"], "qwen_image")
    assert clip.family == "qwen_image" and clip.roles == ("qwen25_7b",)
    tokens = clip.tokenize("a cat")
    ids = [pair[0] for pair in tokens["qwen25_7b"][0]]
    cond = clip.encode_from_tokens(tokens)
    user = ids.index(qwen.IM_START_ID, ids.index(qwen.IM_START_ID) + 1)
    assert ids[user + 1 : user + 3] == [872, 198]
    with torch.no_grad():
        full = made["qwen25"].to(torch.bfloat16).float()(torch.tensor([ids])).last_hidden_state
    assert cond.shape == (1, len(ids) - user - 3, 128)
    assert torch.allclose(cond, full[:, user + 3 :], atol=0.05)


def test_qwen_image_template_graph_repeats_and_fp8_runs(
    executor: Executor, loom_folders: Folders, qwen_models: tuple[Path, dict[str, Any]]
) -> None:
    folders = _use(loom_folders, qwen_models[0])
    first = image_of(folders, run(executor, qwen_image_workflow(seed=2)), "60")
    executor.cache.clear()
    again = image_of(folders, run(executor, qwen_image_workflow(seed=2)), "60")
    assert first.shape == (64, 64, 3) and first.std() > 0 and np.array_equal(first, again)
    fp8 = image_of(
        folders, run(executor, qwen_image_workflow(seed=2, unet="qwen_image_fp8_e4m3fn.safetensors")), "60"
    )
    assert np.isfinite(fp8).all() and fp8.std() > 0


def test_chroma_example_graph_repeats(
    executor: Executor, loom_folders: Folders, chroma_models: tuple[Path, dict[str, Any]]
) -> None:
    folders = _use(loom_folders, chroma_models[0])
    first = image_of(folders, run(executor, chroma_workflow(seed=5)), "9")
    executor.cache.clear()
    again = image_of(folders, run(executor, chroma_workflow(seed=5)), "9")
    other = image_of(folders, run(executor, chroma_workflow(seed=6)), "9")
    assert first.std() > 0 and np.array_equal(first, again) and not np.array_equal(first, other)


def test_chroma_t5_window_is_unpadded_unless_options_say(chroma_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_clip
    from nodes.conditioning.t5_options import T5TokenizerOptions

    clip = load_clip([chroma_models[0] / "text_encoders" / "t5xxl_fp16.safetensors"], "chroma")
    window = clip.tokenize("a fox")["t5xxl"][0]
    assert [pair[0] for pair in window][-1] == 1 and 0 not in [pair[0] for pair in window]  # `</s>`, no pad
    padded = T5TokenizerOptions().run(clip, min_padding=2, min_length=12)
    assert len(padded.tokenize("a fox")["t5xxl"][0]) == 12 and clip.tokenizer_options == {}
    cond, pooled = clip.encode_from_tokens(clip.tokenize("a fox"), return_pooled=True)
    assert pooled is None and cond.shape[1] == len(window)


def test_chroma_fp8_weight_dtype(
    executor: Executor, loom_folders: Folders, chroma_models: tuple[Path, dict[str, Any]]
) -> None:
    folders = _use(loom_folders, chroma_models[0])
    prompt = chroma_workflow(seed=5)
    prompt["1"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    pixels = image_of(folders, run(executor, prompt), "9")
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_contexts_of_different_lengths_are_not_repeated(chroma_models: tuple[Path, dict[str, Any]]) -> None:
    """Joint attention: a positive of 5 tokens and a negative of 3 are predicted apart (as ComfyUI's
    CONDRegular), each equal to the model called on its own context alone."""
    import torch

    from engine.diffusion.guidance import calc_cond_batch, convert_cond
    from engine.models.flow_families import load_diffusion_model

    patcher = load_diffusion_model(chroma_models[0] / "diffusion_models" / "chroma-unlocked-v35.safetensors")
    model = patcher.model
    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor([0.7])
    long, short = torch.randn(1, 5, 192), torch.randn(1, 3, 192)
    cond, uncond = (convert_cond([[c, {}]]) for c in (long, short))
    with torch.no_grad():
        together = calc_cond_batch(model, [cond, uncond], x, sigma, {})
        alone = [model.apply_model(x, sigma, c_crossattn=c) for c in (long, short)]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(together, alone, strict=True))
