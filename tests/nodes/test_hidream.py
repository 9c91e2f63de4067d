"""HiDream-I1 and E1 end to end on tiny stand-ins in ComfyUI's layout: detection, loading through UNETLoader
and QuadrupleCLIPLoader, the four-encoder conditioning, the template graphs, fp8 loading, determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.hidream_fixtures import (
    FILES,
    hidream_e1_workflow,
    hidream_file_state,
    hidream_workflow,
    tiny_hidream_transformer,
    write_hidream_files,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def hidream_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("hidream_models")
    return root, write_hidream_files(root)


@pytest.fixture
def hidream_folders(loom_folders: Folders, hidream_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(hidream_models[0].parent, models_base=hidream_models[0]).models
    return loom_folders


def _clip(folder: Path) -> Any:
    from engine.models.flow_families import load_clip

    return load_clip([folder / name for name in FILES.values()], "hidream")


def test_detected_from_keys_with_and_without_prefix() -> None:
    from engine.models import flow_families, hidream

    state = hidream_file_state(tiny_hidream_transformer())
    for prefix in ("", "model.diffusion_model."):
        shapes = {prefix + k: tuple(v.shape) for k, v in state.items()}
        detected = flow_families.detect(shapes)
        assert detected is not None and (detected.family, detected.prefix) == ("hidream", prefix)
    config = hidream.transformer_config({k: tuple(v.shape) for k, v in state.items()}, "")
    assert (config["num_layers"], config["num_single_layers"], config["num_routed_experts"]) == (1, 1, 4)
    assert config["caption_channels"] == [192, 64] and config["text_emb_dim"] == 192


def test_a_file_missing_caption_projections_is_refused_by_name(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from engine.models.errors import UnsupportedModelError
    from engine.models.flow_families import load_diffusion_model

    state = hidream_file_state(tiny_hidream_transformer())
    del state["caption_projection.2.linear.weight"]
    path = tmp_path / "broken_hidream.safetensors"
    save_file(state, str(path))
    with pytest.raises(UnsupportedModelError, match=r"HiDream.*caption projections"):
        load_diffusion_model(path)


def test_forward_matches_diffusers_on_a_square_latent() -> None:
    """Loom's ComfyUI-style patchify and Llama-layer choice give diffusers' own forward on its inputs."""
    from engine.diffusion.flow_hidream import forward

    model = tiny_hidream_transformer(seed=7)
    x = torch.randn(2, 16, 8, 8)
    t = torch.tensor([300.0, 300.0])
    pooled, t5 = torch.randn(2, 192), torch.randn(2, 20, 192)
    llama = torch.randn(2, 3, 12, 64)
    with torch.no_grad():
        reference = model(
            hidden_states=x,
            timesteps=t,
            encoder_hidden_states_t5=t5,
            encoder_hidden_states_llama3=[llama[:, 0], llama[:, 1]],
            pooled_embeds=pooled,
            return_dict=False,
        )[0]
        ours = forward(model, x, t, pooled, t5, llama[:, :2])
    assert torch.allclose(ours, -reference, atol=1e-5)


def test_four_encoders_make_comfyui_shaped_conditioning(hidream_folders: Folders) -> None:
    root = hidream_folders.models["text_encoders"][0]
    clip = _clip(root)
    assert clip.family == "hidream" and set(clip.roles) == {"clip_l", "clip_g", "t5xxl", "llama3_8b"}
    tokens = clip.tokenize("a red fox")
    assert {k: len(v[0]) for k, v in tokens.items()} == {"g": 248, "l": 248, "t5xxl": 128, "llama": 128}
    llama_ids = [pair[0] for pair in tokens["llama"][0]]
    assert llama_ids[:10] == [128000, *b"a red fox"] and set(llama_ids[10:]) == {128009}
    [[cond, extra]] = clip.encode_from_tokens_scheduled(tokens)
    assert cond.shape == (1, 128, 192) and extra["pooled_output"].shape == (1, 192)
    llama = extra["conditioning_llama3"]
    assert llama.shape == (1, 3, 128, 64)  # after each of the 3 layers, the last normalised
    assert not torch.equal(llama[:, 0], llama[:, 1])


def test_llama_states_are_each_layers_output_with_padding_masked(
    hidream_folders: Folders, hidream_models: tuple[Path, dict[str, Any]]
) -> None:
    clip = _clip(hidream_folders.models["text_encoders"][0])
    tokens = clip.tokenize("a red fox")
    llama = clip.encode_from_tokens_scheduled(tokens)[0][1]["conditioning_llama3"]
    ids = torch.tensor([[pair[0] for pair in tokens["llama"][0]]])
    mask = (ids != 128009).long()
    reference = hidream_models[1]["llama"].to(torch.bfloat16).float()
    with torch.no_grad():
        hidden = reference(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    expected = torch.stack(hidden[1:], dim=1)
    assert torch.allclose(llama, expected, atol=0.05, rtol=0.05)


def test_clip_type_hidream_loads_any_subset(hidream_folders: Folders) -> None:
    """Missing encoders give ComfyUI's zeros: the pooled CLIP vector (768 + 1280) and Llama's states."""
    from engine.models.flow_families import load_clip

    root = hidream_folders.models["text_encoders"][0]
    clip = load_clip([root / FILES["t5xxl"]], "hidream")
    [[cond, extra]] = clip.encode_from_tokens_scheduled(clip.tokenize("x"))
    assert cond.shape == (1, 128, 192) and cond.abs().sum() > 0
    assert extra["pooled_output"].shape == (1, 2048) and extra["pooled_output"].abs().sum() == 0
    assert extra["conditioning_llama3"].shape == (1, 32, 1, 4096)


def test_text_to_image_template_runs_and_repeats(executor: Executor, hidream_folders: Folders) -> None:
    first = image_of(hidream_folders, run(executor, hidream_workflow(seed=3)))
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(hidream_folders, run(executor, hidream_workflow(seed=3)))
    other = image_of(hidream_folders, run(executor, hidream_workflow(seed=4)))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_fp8_file_and_fp8_weight_dtype_load(executor: Executor, hidream_folders: Folders) -> None:
    from engine.models.flow_families import load_diffusion_model

    root = hidream_folders.models["diffusion_models"][0]
    fp8 = load_diffusion_model(root / "hidream_i1_dev_fp8.safetensors")
    cast = load_diffusion_model(root / "hidream_i1_dev_bf16.safetensors", "fp8_e4m3fn")
    for model in (fp8, cast):
        weight = model.model.diffusion_model.double_stream_blocks[0].block.attn1.to_q.weight
        assert weight.dtype == torch.float8_e4m3fn
    pixels = image_of(hidream_folders, run(executor, hidream_workflow(unet="hidream_i1_dev_fp8.safetensors")))
    assert pixels.std() > 0


def test_e1_edit_template_runs(executor: Executor, hidream_folders: Folders) -> None:
    gradient = np.linspace(0, 255, 80 * 60 * 3).reshape(60, 80, 3).astype(np.uint8)
    Image.fromarray(gradient).save(hidream_folders.input / "input.png")
    result = run(executor, hidream_e1_workflow(seed=2))
    pixels = image_of(hidream_folders, result, node="16")
    assert pixels.ndim == 3 and pixels.std() > 0


def test_hidream_conditioning_into_another_family_is_named(hidream_folders: Folders) -> None:
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(
        hidream_folders.models["diffusion_models"][0] / "hidream_i1_dev_bf16.safetensors"
    )
    with pytest.raises(ValueError, match="HiDream's four text encoders"):
        model.model.apply_model(
            torch.zeros(1, 16, 8, 8), torch.tensor([0.5]), c_crossattn=torch.zeros(1, 4, 32)
        )


def test_e1_reference_latent_sits_beside_the_image() -> None:
    """E1's reference joins along the width; only the image's half comes back, and it steers the result."""
    from engine.diffusion.flow_hidream import forward

    model = tiny_hidream_transformer(seed=8)
    x, reference = torch.randn(1, 16, 6, 8), torch.randn(1, 16, 6, 8)
    args = (torch.tensor([500.0]), torch.randn(1, 192), torch.randn(1, 9, 192), torch.randn(1, 3, 7, 64))
    with torch.no_grad():
        plain = forward(model, x, *args)
        edited = forward(model, x, *args, image_cond=reference)
        joined = forward(model, torch.cat([x, reference], dim=-1), *args)
    assert plain.shape == edited.shape == x.shape
    assert not torch.allclose(plain, edited) and torch.allclose(edited, joined[..., :8], atol=1e-6)


def test_blocks_stream_under_a_memory_budget_with_the_same_output() -> None:
    from engine.diffusion import block_offload
    from engine.diffusion.flow_hidream import forward

    model = tiny_hidream_transformer(seed=9, single=2)
    inputs = (torch.randn(1, 16, 8, 8), torch.tensor([400.0]), torch.randn(1, 192))
    text = (torch.randn(1, 5, 192), torch.randn(1, 3, 6, 64))
    with torch.no_grad():
        expected = forward(model, *inputs, *text)
    blocks = block_offload.blocks_of(model)
    assert len(blocks) == 3  # one double and two single blocks
    sizes = [block_offload._bytes(b) for b in blocks]
    budget = block_offload._bytes(model) - sum(sizes) + sizes[0] + max(sizes)
    offload = block_offload.place(model, torch.device("cpu"), budget)
    try:
        with torch.no_grad():
            assert torch.equal(forward(model, *inputs, *text), expected)
        assert offload.streamed == blocks[1:] and offload.peak_bytes <= budget
    finally:
        block_offload.remove(model)


@pytest.mark.parametrize(
    "module",
    [
        "transformer.double_stream_blocks.0.block.attn1.to_q",
        "diffusion_model.double_stream_blocks.0.block.attn1.to_q",
        "lycoris_double_stream_blocks_0_block_attn1_to_q",
    ],
)
def test_loras_in_simpletuner_and_comfyui_names_apply(
    executor: Executor, hidream_folders: Folders, module: str
) -> None:
    from safetensors.torch import save_file

    loras = hidream_folders.models["loras"][0]
    loras.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(3)
    lora = {
        f"{module}.lora_down.weight": torch.randn(4, 128),
        f"{module}.lora_up.weight": torch.randn(128, 4),
    }
    save_file(lora, str(loras / "hidream_lora.safetensors"))
    graph = hidream_workflow(seed=5)
    plain = image_of(hidream_folders, run(executor, graph))
    graph["71"] = {
        "class_type": "LoraLoaderModelOnly",
        "inputs": {"model": ["70", 0], "lora_name": "hidream_lora.safetensors", "strength_model": 1.0},
    }
    graph["3"]["inputs"]["model"] = ["71", 0]
    steered = image_of(hidream_folders, run(executor, graph))
    assert not np.array_equal(plain, steered)


def test_prompts_of_different_llama_lengths_sample_together(
    executor: Executor, hidream_folders: Folders
) -> None:
    """A positive prompt past Llama's 128 tokens (never cut) beside a short negative samples: the two cannot
    share one batch (their Llama sequences differ in length)."""
    graph = hidream_workflow(seed=6)
    graph["16"]["inputs"]["text"] = "a fox " * 80
    pixels = image_of(hidream_folders, run(executor, graph))
    assert pixels.std() > 0


def test_llama_weights_push_hidden_states_as_comfyui_does(hidream_folders: Folders) -> None:
    """ComfyUI's weighting loop walks the layer axis of Llama's [layers + 1, tokens, width] output: token 1
    weighted pushes hidden state 1 (the first layer's output) whole; the other layers stay as unweighted."""
    clip = _clip(hidream_folders.models["text_encoders"][0])

    def llama(text: str) -> torch.Tensor:
        tokens = clip.tokenize(text)
        return clip.encode_from_tokens_scheduled(tokens)[0][1]["conditioning_llama3"]

    weighted, plain = llama("(a:1.5) fox"), llama("a fox")
    assert not torch.allclose(weighted[:, 0], plain[:, 0])
    assert torch.allclose(weighted[:, 1:], plain[:, 1:], atol=1e-6)


def test_scaled_fp8_t5_is_read_as_weight_times_scale(
    tmp_path: Path, hidream_models: tuple[Path, dict[str, Any]]
) -> None:
    """t5xxl_fp8_e4m3fn_scaled (the HiDream templates' T5): fp8 matrices beside their `scale_weight`."""
    from safetensors.torch import save_file

    from engine.models.flow_families import load_clip
    from tests.nodes.flow_fixtures import t5_file_state

    state = t5_file_state(hidream_models[1]["t5"])
    scaled: dict[str, torch.Tensor] = {"scaled_fp8": torch.empty(0, dtype=torch.float8_e4m3fn)}
    expected = {}
    for key, value in state.items():
        if key.endswith(".weight") and value.ndim == 2 and key.startswith("encoder.block."):
            scale = value.abs().max() / 448
            stored = (value / scale).to(torch.float8_e4m3fn)
            scaled[key], scaled[key.removesuffix("weight") + "scale_weight"] = stored, scale.reshape(())
            expected[key] = stored.float() * scale
        else:
            scaled[key] = value
    save_file(scaled, str(tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"))
    clip = load_clip([tmp_path / "t5xxl_fp8_e4m3fn_scaled.safetensors"], "hidream")
    weights = clip.encoders[0].state_dict()
    for key, value in expected.items():
        assert torch.allclose(weights[key].float(), value, rtol=1e-2, atol=1e-6), key


def test_llama_keeps_comfyuis_module_name_in_saves_and_patches(
    executor: Executor, hidream_folders: Folders
) -> None:
    """ComfyUI's HiDream text model holds Llama as `llama`: its state-dict keys (what CLIPSave names the
    file after and packs build patches from) are the keys add_patches takes, and the saved four files load
    back to the same conditioning."""
    from engine.models.flow_families import load_clip

    root = hidream_folders.models["text_encoders"][0]
    loader = {
        "class_type": "QuadrupleCLIPLoader",
        "inputs": {f"clip_name{i + 1}": name for i, name in enumerate(FILES.values())},
    }
    run(
        executor,
        {
            "1": loader,
            "2": {"class_type": "CLIPSave", "inputs": {"clip": ["1", 0], "filename_prefix": "clip/HiDream"}},
        },
    )
    saved = sorted(p.name for p in (hidream_folders.output / "clip").iterdir())
    assert saved == [f"HiDream_{m}_00001_.safetensors" for m in ("clip_g", "clip_l", "llama", "t5xxl")]
    clip = _clip(root)
    keys = [k for k in clip.get_sd() if k.startswith("llama.")]
    assert keys and clip.cond_stage_model.llama is not None
    assert set(clip.clone().add_patches({k: (torch.zeros(()),) for k in keys})) == set(keys)
    again = load_clip(sorted((hidream_folders.output / "clip").iterdir()), "hidream")
    tokens = clip.tokenize("a red fox")
    ours, theirs = (
        clip.encode_from_tokens(tokens, return_dict=True),
        again.encode_from_tokens(tokens, return_dict=True),
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)


@pytest.mark.parametrize("clip_type", ["stable_diffusion", "sd3"])
def test_a_llama_file_alone_is_hidreams_under_any_type(hidream_folders: Folders, clip_type: str) -> None:
    """ComfyUI 0.3.64's CLIPLoader makes a Llama 3.1 8B file HiDream's text encoder whatever its type."""
    from nodes.loaders.split import CLIPLoader

    clip = CLIPLoader().run(FILES["llama"], clip_type)
    assert clip.family == "hidream" and clip.roles == ("llama3_8b",)
    [[_, extra]] = clip.encode_from_tokens_scheduled(clip.tokenize("a red fox"))
    assert extra["conditioning_llama3"].shape[:2] == (1, 3)
