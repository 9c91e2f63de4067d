"""Flux image references on tiny stand-ins in the released layouts: a SigLIP vision encoder read by
CLIPVisionLoader and encoded by CLIPVisionEncode, Flux Redux through StyleModelLoader/StyleModelApply, and
USO's style projector through ModelPatchLoader/USOStyleReference (a Flux "post_input" patch), each run end
to end through the executor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import save_file

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures import write_flux_files
from tests.nodes.harness import call
from tests.nodes.redux_fixtures import SIGLIP, redux_layout, siglip_layout, tiny_siglip, uso_layout
from tests.nodes.test_sd_nodes import image_of, run
from tests.nodes.vision_fixtures import hf_layout, tiny_vision

HINTS = {"loom.arch": json.dumps({"heads": SIGLIP["heads"]})}


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("redux_models")
    write_flux_files(root)
    for kind in ("clip_vision", "style_models", "model_patches"):
        (root / kind).mkdir()
    save_file(siglip_layout(tiny_siglip(3)), str(root / "clip_vision" / "sigclip_tiny.safetensors"), HINTS)
    save_file(hf_layout(tiny_vision(0)), str(root / "clip_vision" / "clip_vit_l.safetensors"))
    save_file(redux_layout(), str(root / "style_models" / "flux1-redux-dev.safetensors"))
    save_file(uso_layout(), str(root / "model_patches" / "uso-flux1-projector-v1.safetensors"))
    return root


@pytest.fixture
def folders(loom_folders: Folders, flux_models: Path) -> Folders:
    loom_folders.models = Folders.under(flux_models.parent, models_base=flux_models).models
    pixels = np.zeros((48, 36, 3), dtype=np.uint8)
    pixels[8:30, 4:20] = (220, 60, 30)
    PILImage.fromarray(pixels).save(loom_folders.input / "style.png")
    return loom_folders


def flux(seed: int = 3) -> dict[str, Any]:
    from tests.nodes.flow_fixtures import flux_workflow

    return flux_workflow(seed=seed)


def with_vision(
    prompt: dict[str, Any], encoder: str = "sigclip_tiny.safetensors", crop: str = "center"
) -> None:
    prompt["40"] = {"class_type": "CLIPVisionLoader", "inputs": {"clip_name": encoder}}
    prompt["41"] = {"class_type": "LoadImage", "inputs": {"image": "style.png"}}
    prompt["42"] = {
        "class_type": "CLIPVisionEncode",
        "inputs": {"clip_vision": ["40", 0], "image": ["41", 0], "crop": crop},
    }


def redux(seed: int = 3, strength: float = 1.0, kind: str = "multiply", **vision: str) -> dict[str, Any]:
    """ComfyUI_examples' flux_redux_model_example: the Redux tokens join the guided prompt."""
    prompt = flux(seed)
    with_vision(prompt, **vision)
    prompt["43"] = {
        "class_type": "StyleModelLoader",
        "inputs": {"style_model_name": "flux1-redux-dev.safetensors"},
    }
    prompt["44"] = {
        "class_type": "StyleModelApply",
        "inputs": {
            "conditioning": ["35", 0],
            "style_model": ["43", 0],
            "clip_vision_output": ["42", 0],
            "strength": strength,
            "strength_type": kind,
        },
    }
    prompt["31"]["inputs"]["positive"] = ["44", 0]
    return prompt


def uso(seed: int = 3, **vision: str) -> dict[str, Any]:
    """The USO style template: the projector patches the model; the prompt is unchanged."""
    prompt = flux(seed)
    with_vision(prompt, **vision)
    prompt["45"] = {
        "class_type": "ModelPatchLoader",
        "inputs": {"name": "uso-flux1-projector-v1.safetensors"},
    }
    prompt["46"] = {
        "class_type": "USOStyleReference",
        "inputs": {"model": ["12", 0], "model_patch": ["45", 0], "clip_vision_output": ["42", 0]},
    }
    prompt["31"]["inputs"]["model"] = ["46", 0]
    return prompt


def test_siglip_loads_from_comfyui_layout_and_encodes_like_transformers(
    executor: Executor, folders: Folders
) -> None:
    from engine.diffusion.clip_vision import clip_preprocess

    (vision,) = call(executor, "CLIPVisionLoader", clip_name="sigclip_tiny.safetensors")
    image = torch.rand(1, 40, 30, 3)
    (centred,) = call(executor, "CLIPVisionEncode", clip_vision=vision, image=image, crop="center")
    (squeezed,) = call(executor, "CLIPVisionEncode", clip_vision=vision, image=image, crop="none")
    reference = tiny_siglip(3)
    pixels = clip_preprocess(image, SIGLIP["image"], (0.5,) * 3, (0.5,) * 3)
    with torch.no_grad():
        expected = reference(pixel_values=pixels, output_hidden_states=True)
    tokens = (SIGLIP["image"] // SIGLIP["patch"]) ** 2
    assert centred.all_hidden_states.shape == (1, SIGLIP["layers"], tokens, SIGLIP["hidden"])
    assert torch.allclose(centred.last_hidden_state, expected.last_hidden_state, atol=1e-5)
    assert torch.equal(centred.image_embeds, centred.last_hidden_state)  # SigLIP has no pooled embedding
    assert torch.allclose(centred.penultimate_hidden_states, expected.hidden_states[-2], atol=1e-5)
    assert torch.equal(centred.all_hidden_states[:, -2], centred.penultimate_hidden_states)
    assert not torch.allclose(centred.last_hidden_state, squeezed.last_hidden_state)


def test_redux_tokens_join_the_prompt_scaled_by_strength(executor: Executor, folders: Folders) -> None:
    (vision,) = call(executor, "CLIPVisionLoader", clip_name="sigclip_tiny.safetensors")
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 32, 32, 3), crop="center"
    )
    (style,) = call(executor, "StyleModelLoader", style_model_name="flux1-redux-dev.safetensors")
    text = torch.randn(1, 5, 192)
    conditioning = [[text, {"pooled_output": torch.randn(1, 64)}]]
    tokens = style.get_cond(encoded)
    assert tokens.shape == (1, 4, 192)
    for strength in (1.0, 0.5, 0.0):
        (out,) = call(
            executor, "StyleModelApply", conditioning=conditioning, style_model=style,
            clip_vision_output=encoded, strength=strength, strength_type="multiply",
        )  # fmt: skip
        joined = out[0][0]
        assert joined.shape == (1, 9, 192) and torch.equal(joined[:, :5], text)
        assert torch.allclose(joined[:, 5:], tokens * strength)
        assert "attention_mask" not in out[0][1]
    (biased,) = call(
        executor, "StyleModelApply", conditioning=conditioning, style_model=style,
        clip_vision_output=encoded, strength=0.5, strength_type="attn_bias",
    )  # fmt: skip
    mask = biased[0][1]["attention_mask"]
    assert torch.allclose(biased[0][0][:, 5:], tokens)
    assert mask.shape == (1, 10, 10) and float(mask[0, 0, 5]) == pytest.approx(np.log(0.5), abs=1e-3)


def test_redux_runs_end_to_end_and_changes_the_image(executor: Executor, folders: Folders) -> None:
    plain = image_of(folders, run(executor, flux()), "9").astype(int)
    guided = image_of(folders, run(executor, redux()), "9").astype(int)
    executor.cache.clear()
    again = image_of(folders, run(executor, redux()), "9").astype(int)
    none_crop = image_of(folders, run(executor, redux(crop="none")), "9").astype(int)
    assert np.array_equal(guided, again)
    assert not np.array_equal(guided, plain) and not np.array_equal(guided, none_crop)


def test_redux_attn_bias_at_strength_one_is_multiply_and_weaker_bias_moves_towards_plain(
    executor: Executor, folders: Folders
) -> None:
    plain = image_of(folders, run(executor, flux()), "9").astype(int)
    multiply = image_of(folders, run(executor, redux()), "9").astype(int)
    unbiased = image_of(folders, run(executor, redux(kind="attn_bias")), "9").astype(int)
    weak = image_of(folders, run(executor, redux(strength=0.01, kind="attn_bias")), "9").astype(int)
    assert np.array_equal(multiply, unbiased)
    assert np.abs(weak - plain).mean() < np.abs(multiply - plain).mean()


def test_uso_style_reference_runs_end_to_end(executor: Executor, folders: Folders) -> None:
    plain = image_of(folders, run(executor, flux()), "9").astype(int)
    styled = image_of(folders, run(executor, uso()), "9").astype(int)
    executor.cache.clear()
    again = image_of(folders, run(executor, uso()), "9").astype(int)
    assert np.array_equal(styled, again) and not np.array_equal(styled, plain)


def test_uso_patch_prepends_projected_tokens_with_zero_ids(executor: Executor, folders: Folders) -> None:
    from engine.diffusion.uso_style import project

    (model,) = call(executor, "UNETLoader", unet_name="flux1-dev.safetensors", weight_dtype="default")
    (vision,) = call(executor, "CLIPVisionLoader", clip_name="sigclip_tiny.safetensors")
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 28, 28, 3), crop="center"
    )
    (patch,) = call(executor, "ModelPatchLoader", name="uso-flux1-projector-v1.safetensors")
    (patched,) = call(
        executor, "USOStyleReference", model=model, model_patch=patch, clip_vision_output=encoded
    )
    (post,) = patched.model_options["transformer_options"]["patches"]["post_input"]
    txt, ids = torch.randn(1, 6, 128), torch.zeros(1, 6, 3)
    out = post({"img": torch.randn(1, 16, 128), "txt": txt, "img_ids": torch.ones(1, 16, 3), "txt_ids": ids})
    hidden = encoded.all_hidden_states
    layers = torch.stack((hidden[:, -20], hidden[:, -11], encoded.penultimate_hidden_states))
    style = project(patch, layers, torch.float32, torch.device("cpu"))
    assert style.shape == (1, 9, 128)
    assert torch.allclose(style, by_hand(uso_layout(), hidden), atol=1e-5)
    assert torch.equal(out["txt"][:, 9:], txt) and torch.allclose(out["txt"][:, :9], style)
    assert out["txt_ids"].shape == (1, 15, 3) and not out["txt_ids"].any()
    assert "post_input" not in model.model_options["transformer_options"].get("patches", {})
    # Clones downstream (LoRAs, sampling patches) share the patch and its weights, as ComfyUI's do.
    assert patched.clone().model_options["transformer_options"]["patches"]["post_input"][0] is post


def by_hand(weights: dict[str, torch.Tensor], hidden: torch.Tensor) -> torch.Tensor:
    """USO's projection with torch modules: per level, tokens mixed by a linear layer + SiLU, then a layer
    norm and a projection; high (penultimate), mid (11th from last), low (20th from last)."""
    out = []
    for level, layer in (("high", -2), ("mid", -11), ("low", -20)):
        p = f"feature_embedder.{level}_"
        mix_w, proj_w = weights[p + "embedding_linear.0.weight"], weights[p + "projection.weight"]
        mix = torch.nn.Linear(mix_w.shape[1], mix_w.shape[0])
        norm = torch.nn.LayerNorm(proj_w.shape[1])
        proj = torch.nn.Linear(proj_w.shape[1], proj_w.shape[0])
        mix.load_state_dict({"weight": mix_w, "bias": weights[p + "embedding_linear.0.bias"]})
        norm.load_state_dict(
            {"weight": weights[p + "layer_norm.weight"], "bias": weights[p + "layer_norm.bias"]}
        )
        proj.load_state_dict({"weight": proj_w, "bias": weights[p + "projection.bias"]})
        with torch.no_grad():
            tokens = torch.nn.functional.silu(mix(hidden[:, layer].transpose(1, 2))).transpose(1, 2)
            out.append(proj(norm(tokens)))
    return torch.cat(out, dim=1)


def test_wrong_inputs_get_errors_naming_node_and_input(executor: Executor, folders: Folders) -> None:
    clip_l = run(executor, redux(encoder="clip_vit_l.safetensors"))
    assert clip_l.status == "error" and "StyleModelApply" in clip_l.error["exception_message"]
    assert "SigLIP" in clip_l.error["exception_message"]
    uso_clip = run(executor, uso(encoder="clip_vit_l.safetensors"))
    message = uso_clip.error["exception_message"]
    assert uso_clip.status == "error" and "USOStyleReference" in message and "clip_vision_output" in message
    wrong_style = redux()
    wrong_style["43"]["inputs"]["style_model_name"] = "flux1-dev.safetensors"
    folders.models["style_models"].append(folders.models["diffusion_models"][0])
    failed = run(executor, wrong_style)
    assert failed.status == "error" and "StyleModelLoader" in failed.error["exception_message"]


def test_style_tokens_and_uso_together_with_an_attention_bias(executor: Executor, folders: Folders) -> None:
    """USO's tokens go before a prompt whose mask (attn_bias) was made without them: they stay unbiased."""
    prompt = redux(strength=0.3, kind="attn_bias")
    prompt["45"] = {
        "class_type": "ModelPatchLoader",
        "inputs": {"name": "uso-flux1-projector-v1.safetensors"},
    }
    prompt["46"] = {
        "class_type": "USOStyleReference",
        "inputs": {"model": ["12", 0], "model_patch": ["45", 0], "clip_vision_output": ["42", 0]},
    }
    prompt["31"]["inputs"]["model"] = ["46", 0]
    both = image_of(folders, run(executor, prompt), "9").astype(int)
    assert not np.array_equal(
        both, image_of(folders, run(executor, redux(strength=0.3, kind="attn_bias")), "9")
    )


def test_mask_image_part_resizes_to_the_token_grid() -> None:
    from engine.diffusion.flux_masks import fit_mask, resize_image_part

    mask = torch.zeros(1, 3 + 1, 3 + 1)
    mask[:, :3, 3] = -1.0  # text → image
    mask[:, 3, :3] = -2.0  # image → text
    mask[:, 3, 3] = -3.0
    grown = resize_image_part(mask, (1, 1), (2, 3))
    assert grown.shape == (1, 9, 9)
    assert torch.equal(grown[:, :3, :3], mask[:, :3, :3])
    assert (
        (grown[:, :3, 3:] == -1).all() and (grown[:, 3:, :3] == -2).all() and (grown[:, 3:, 3:] == -3).all()
    )
    assert resize_image_part(grown, (2, 3), (2, 3)) is grown
    fitted = fit_mask(grown, 2, 9 + 2 + 4)
    assert fitted.shape == (1, 1, 15, 15) and not fitted[0, 0, :2].any() and not fitted[0, 0, :, 11:].any()
    with pytest.raises(ValueError, match="attention_mask covers 9 tokens"):
        fit_mask(grown, 0, 8)


def test_released_siglip_sizes_are_recognised_from_shapes() -> None:
    """so400m: 384 px in 14-px patches is a 27 × 27 grid (ComfyUI resizes to 384 and the convolution drops
    the last 6 pixels); 512 px in 16-px patches is 32 × 32."""
    from engine.models.clip_vision import detect_vision

    for positions, patch, name, size in ((729, 14, "siglip_384", 384), (1024, 16, "siglip_512", 512)):
        shapes = {
            "vision_model.embeddings.patch_embedding.weight": (1152, 3, patch, patch),
            "vision_model.embeddings.patch_embedding.bias": (1152,),
            "vision_model.embeddings.position_embedding.weight": (positions, 1152),
        }
        shapes |= {f"vision_model.encoder.layers.{i}.mlp.fc1.weight": (4304, 1152) for i in range(27)}
        spec = detect_vision(shapes)
        assert (spec.kind, spec.name, spec.image_size, spec.mean_std[0]) == ("siglip", name, size, (0.5,) * 3)
