"""Lumina Image 2.0 end to end on tiny stand-ins in ComfyUI's layouts: detection (against Z-Image), the
transformer's conversion, Gemma 2 with its tokenizer read from the file, the split loaders and the
all-in-one checkpoint, ComfyUI_examples' workflow, CLIPTextEncodeLumina2, RenormCFG and determinism."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.lumina2_fixtures import (
    CORPUS,
    checkpoint_workflow,
    lumina2_to_comfy,
    split_workflow,
    tiny_lumina2_transformer,
    write_lumina2_files,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def lumina2_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("lumina2_models")
    return root, write_lumina2_files(root)


@pytest.fixture
def lumina2_folders(loom_folders: Folders, lumina2_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(lumina2_models[0].parent, models_base=lumina2_models[0]).models
    return loom_folders


def test_detected_as_lumina2_not_zimage() -> None:
    from engine.models import flow_families

    state = lumina2_to_comfy(tiny_lumina2_transformer().state_dict())
    for prefix in ("", "model.diffusion_model."):
        shapes = {prefix + k: tuple(v.shape) for k, v in state.items()}
        detected = flow_families.detect(shapes)
        assert detected is not None and (detected.family, detected.prefix) == ("lumina2", prefix)
        shapes[prefix + "x_pad_token"] = (1, 48)  # Z-Image's pad tokens make the same keys Z-Image
        shapes[prefix + "cap_pad_token"] = (1, 48)
        assert flow_families.detect(shapes).family == "zimage"  # type: ignore[union-attr]


def test_loaded_transformer_matches_the_diffusers_original() -> None:
    from engine.models import lumina2

    model = tiny_lumina2_transformer(seed=5)
    loaded = lumina2.load_transformer(lumina2_to_comfy(model.state_dict()), "", torch.float32)
    assert loaded.config.num_layers == 2 and loaded.config.num_attention_heads == 2
    assert loaded.config.num_kv_heads == 1 and list(loaded.config.axes_dim_rope) == [8, 8, 8]
    x, caption = torch.randn(1, 16, 8, 6), torch.randn(1, 5, 32)
    mask = torch.ones(1, 5, dtype=torch.bool)
    with torch.no_grad():
        expected = model(x, torch.tensor([0.3]), caption, mask, return_dict=False)[0]
        actual = loaded(x, torch.tensor([0.3]), caption, mask, return_dict=False)[0]
    assert torch.equal(expected, actual)


def test_tokenizer_comes_from_the_file_and_matches_sentencepiece(
    lumina2_models: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    import sentencepiece
    from transformers import GemmaTokenizer

    from engine.models.flow_families import load_clip

    root, made = lumina2_models
    clip = load_clip([root / "text_encoders" / "gemma_2_2b_fp16.safetensors"], "lumina2")
    assert clip.family == "lumina2" and clip.roles == ("gemma2_2b",)
    reference = sentencepiece.SentencePieceProcessor(model_proto=made["proto"])
    (tmp_path / "tokenizer.model").write_bytes(made["proto"])
    hf = GemmaTokenizer.from_pretrained(str(tmp_path), add_bos_token=True)
    for text in [*CORPUS, "a red circle on white", "Zürich 東京 🙂 12.5%", "  two  spaces\n", ""]:
        ids = [pair[0] for pair in clip.tokenize(text)["gemma2_2b"][0]]
        assert ids == [2, *reference.encode(text)], text  # one start token, no end, no padding
        assert ids == hf(text)["input_ids"], text
    weighted = clip.tokenize("a (red:1.5) circle")["gemma2_2b"][0]
    assert weighted[0] == (2, 1.0) and {w for _, w in weighted} == {1.0, 1.5}  # weights parsed, as ComfyUI


def test_gemma_encoder_reads_the_penultimate_layer(lumina2_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_clip

    root, made = lumina2_models
    clip = load_clip([root / "text_encoders" / "gemma_2_2b_fp16.safetensors"], "lumina2", device="cpu")
    tokens = clip.tokenize("a red circle on white")
    ids = [pair[0] for pair in tokens["gemma2_2b"][0]]
    cond, pooled = clip.encode_from_tokens(tokens, return_pooled=True)
    reference = made["gemma"].half().float()
    with torch.no_grad():
        hidden = reference(torch.tensor([ids]), output_hidden_states=True).hidden_states[-2]
    assert pooled is None and cond.shape == (1, len(ids), 32)
    assert torch.allclose(cond, hidden, atol=1e-3)


def test_weighted_tokens_push_from_the_masked_empty_prompt(
    lumina2_models: tuple[Path, dict[str, Any]],
) -> None:
    """As ComfyUI's Gemma: the empty prompt is the start token then padding, and the padding is masked out
    of the attention (keys), so weighted tokens move away from what the start token alone gives."""
    from engine.models.flow_families import load_clip

    root, made = lumina2_models
    clip = load_clip([root / "text_encoders" / "gemma_2_2b_fp16.safetensors"], "lumina2", device="cpu")
    tokens = clip.tokenize("a (red:1.5) circle")
    pairs = tokens["gemma2_2b"][0]
    ids = torch.tensor([[pair[0] for pair in pairs], [2] + [0] * (len(pairs) - 1)])
    mask = torch.ones_like(ids)
    mask[1, 1:] = 0
    reference = made["gemma"].half().float()
    with torch.no_grad():
        hidden = reference(ids, attention_mask=mask, output_hidden_states=True).hidden_states[-2]
    weights = torch.tensor([pair[1] for pair in pairs]).reshape(1, -1, 1)
    expected = (hidden[:1] - hidden[1:]) * weights + hidden[1:]
    cond = clip.encode_from_tokens(tokens)
    assert torch.allclose(cond, expected, atol=1e-3)


def test_qwen3_file_under_lumina2_is_still_zimage(tmp_path: Path) -> None:
    from engine.models.flow_families import load_clip
    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import qwen_file_state, tiny_qwen

    path = tmp_path / "qwen_3_4b.safetensors"
    _save(path, qwen_file_state(tiny_qwen("qwen3", 3)))
    assert load_clip([path], "lumina2").family == "zimage"


def test_split_files_run_with_clip_text_encode_lumina2(executor: Executor, lumina2_folders: Folders) -> None:
    from engine import folders
    from engine.models.flow_families import load_diffusion_model

    path = folders.current().model_path("diffusion_models", "lumina_2_model_bf16.safetensors")
    model = load_diffusion_model(path)
    sampling = model.get_model_object("model_sampling")
    assert (sampling.shift, sampling.multiplier) == (6.0, 1.0)
    first = image_of(lumina2_folders, run(executor, split_workflow(seed=3)), "8")
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(lumina2_folders, run(executor, split_workflow(seed=3)), "8")
    other = image_of(lumina2_folders, run(executor, split_workflow(seed=4)), "8")
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_checkpoint_runs_the_examples_workflow(executor: Executor, lumina2_folders: Folders) -> None:
    """ComfyUI_examples' lumina2_basic_example: CheckpointLoaderSimple on lumina_2.safetensors (MODEL, the
    Gemma CLIP with the tokenizer stored beside it, the VAE under `vae.`) and the system prompt typed in
    CLIPTextEncode gives what CLIPTextEncodeLumina2 gives."""
    first = image_of(lumina2_folders, run(executor, checkpoint_workflow(seed=3)), "8")
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(lumina2_folders, run(executor, checkpoint_workflow(seed=3)), "8")
    assert np.array_equal(first, again)
    prompt = checkpoint_workflow(seed=3)
    prompt["3"] = {
        "class_type": "CLIPTextEncodeLumina2",
        "inputs": {"system_prompt": "superior", "user_prompt": "a red circle on white", "clip": ["1", 1]},
    }
    assert np.array_equal(first, image_of(lumina2_folders, run(executor, prompt), "8"))


def test_renorm_cfg_changes_guidance_and_truncates(executor: Executor, lumina2_folders: Folders) -> None:
    plain = image_of(lumina2_folders, run(executor, checkpoint_workflow(seed=3)), "8")

    def renormed(cfg_trunc: float, renorm_cfg: float) -> np.ndarray:
        prompt = checkpoint_workflow(seed=3)
        prompt["20"] = {
            "class_type": "RenormCFG",
            "inputs": {"model": ["2", 0], "cfg_trunc": cfg_trunc, "renorm_cfg": renorm_cfg},
        }
        prompt["6"]["inputs"]["model"] = ["20", 0]
        return image_of(lumina2_folders, run(executor, prompt), "8")

    def close(a: np.ndarray, b: np.ndarray) -> bool:  # x - (x - denoised) rounds in the last bit
        return int(np.abs(a.astype(int) - b.astype(int)).max()) <= 1

    assert close(renormed(100.0, 0.0), plain)  # no cap, never truncated: plain CFG
    capped = renormed(100.0, 1.0)
    assert np.isfinite(capped).all() and not np.array_equal(capped, plain)
    unguided = checkpoint_workflow(seed=3)
    unguided["6"]["inputs"]["cfg"] = 1.0
    assert close(renormed(0.0, 1.0), image_of(lumina2_folders, run(executor, unguided), "8"))


@pytest.mark.parametrize("name", ["diffusion_model.{base}", "lora_unet_{flat}"])
def test_reference_layout_lora_equals_the_baked_file(tmp_path: Path, name: str) -> None:
    """A LoRA in the reference layout (fused qkv included) lands on the diffusers weights the file's rows
    went to: the same weights as the LoRA baked into the file."""
    from safetensors.torch import save_file

    from tests.nodes.test_flow_lora import _baked, _file, _lora, _weights

    state = lumina2_to_comfy(tiny_lumina2_transformer(seed=2).state_dict())
    bases = [
        "layers.0.attention.qkv",
        "layers.1.feed_forward.w1",
        "context_refiner.0.attention.out",
        "noise_refiner.0.adaLN_modulation.1",
        "final_layer.adaLN_modulation.1",
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


def test_fp8_weight_dtype_stores_fp8_and_runs(executor: Executor, lumina2_folders: Folders) -> None:
    from engine import folders
    from engine.models.flow_families import load_diffusion_model

    path = folders.current().model_path("diffusion_models", "lumina_2_model_bf16.safetensors")
    network = load_diffusion_model(path, "fp8_e4m3fn").model.diffusion_model
    assert network.layers[0].attn.to_q.weight.dtype == torch.float8_e4m3fn
    assert network.time_caption_embed.caption_embedder[1].weight.dtype != torch.float8_e4m3fn
    prompt = split_workflow(seed=3)
    prompt["1"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    pixels = image_of(lumina2_folders, run(executor, prompt), "8")
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_clip_save_keeps_the_tokenizer(lumina2_models: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    """CLIPSave's Gemma file carries the sentencepiece model, so it loads and tokenizes again."""
    from safetensors.torch import save_file

    from engine.diffusion.saving import clip_files_state
    from engine.models.flow_families import load_clip

    root, _ = lumina2_models
    clip = load_clip([root / "text_encoders" / "gemma_2_2b_fp16.safetensors"], "lumina2")
    files = clip_files_state(clip)
    assert set(files) == {"gemma2_2b"} and "spiece_model" in files["gemma2_2b"]
    save_file(files["gemma2_2b"], str(tmp_path / "saved.safetensors"))
    again = load_clip([tmp_path / "saved.safetensors"], "lumina2")
    assert again.tokenize("a red circle") == clip.tokenize("a red circle")


@pytest.mark.parametrize("clip_type", ["stable_diffusion", "sd3", "wan"])
def test_a_gemma_file_alone_is_lumina2_under_any_type(
    executor: Executor, lumina2_folders: Folders, clip_type: str
) -> None:
    """ComfyUI 0.3.64's CLIPLoader makes a Gemma 2 2B file Lumina 2's text encoder whatever its type
    (a workflow that left the type at stable_diffusion runs)."""
    expected = image_of(lumina2_folders, run(executor, split_workflow(seed=3)), "8")
    workflow = split_workflow(seed=3)
    loader = next(n for n in workflow.values() if n["class_type"] == "CLIPLoader")
    loader["inputs"]["type"] = clip_type
    executor.cache.clear()
    assert np.array_equal(image_of(lumina2_folders, run(executor, workflow), "8"), expected)
