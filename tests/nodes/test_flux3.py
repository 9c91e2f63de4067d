"""Flux 3 Klein end to end on tiny stand-ins in ComfyUI's layouts (int8 ConvRot diffusion models and
Qwen3-VL 4B, Flux.2's VAE): detection, the model call against diffusers' own on the same weights, the
Qwen3-VL conditioning (eight stacked layers, padded to 80 tokens), text to image for base and distilled,
an edit through ReferenceMultiLatent, the layout nodes, determinism, clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flux3_fixtures import (
    BASE,
    DISTILLED,
    JOINT,
    TEXT,
    edit_workflow,
    flux3_to_comfy,
    t2i_workflow,
    tiny_transformer,
    write_files,
)
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def flux3_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("flux3_models")
    return root, write_files(root)


@pytest.fixture
def flux3_folders(loom_folders: Folders, flux3_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(flux3_models[0].parent, models_base=flux3_models[0]).models
    return loom_folders


def test_detected_before_flux2_base_and_distilled() -> None:
    from engine.models import flow_families

    for flow_map, variant in ((False, "Flux 3 Klein base"), (True, "Flux 3 Klein (distilled)")):
        state = flux3_to_comfy(tiny_transformer(1, flow_map).state_dict())
        for prefix in ("", "model.diffusion_model."):
            detected = flow_families.detect({prefix + k: tuple(v.shape) for k, v in state.items()})
            assert detected is not None
            assert (detected.family, detected.prefix, detected.variant) == ("flux3", prefix, variant)


def _dequantised_reference(state: dict[str, torch.Tensor], flow_map: bool) -> Any:
    """diffusers' model holding exactly the weights the int8 file stands for."""
    from diffusers.loaders.single_file_utils import convert_flux3_transformer_checkpoint_to_diffusers

    from engine.models.int8_convrot import dequantised

    plain = {k: v.float() for k, v in dequantised(state, torch.float32).items()}
    model = tiny_transformer(0, flow_map)
    model.load_state_dict(convert_flux3_transformer_checkpoint_to_diffusers(plain))
    return model.eval()


@pytest.mark.parametrize("name", [BASE, DISTILLED])
def test_model_call_matches_diffusers(flux3_models: tuple[Path, dict[str, Any]], name: str) -> None:
    """Loom's MODEL (positions, reference placement, flow-map target) against diffusers' Flux 3 called
    as its pipeline calls it, on the same dequantised weights."""
    from engine.models.flow_families import load_diffusion_model

    root = flux3_models[0]
    model = load_diffusion_model(root / "diffusion_models" / name)
    flow_map = name == DISTILLED
    assert model.model.family == "flux3" and model.get_model_object("model_sampling").shift == 6.93
    from safetensors.torch import load_file

    reference = _dequantised_reference(load_file(str(root / "diffusion_models" / name)), flow_map)
    x, ref, context = torch.randn(1, 128, 3, 4), torch.randn(1, 128, 2, 3), torch.randn(1, 80, JOINT)
    sigma = torch.tensor([0.6])
    options = {"sample_sigmas": torch.tensor([1.0, 0.6, 0.25, 0.0])}
    extra = model.model.added_conditions([{"reference_latents": [ref]}], x, 1)
    with torch.no_grad():
        denoised = model.model.apply_model(
            x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
        )
        img_ids = torch.cartesian_prod(torch.arange(1), torch.arange(3), torch.arange(4), torch.tensor([0]))
        ref_ids = torch.cartesian_prod(torch.arange(1), torch.arange(2), torch.arange(3), torch.tensor([-1]))
        img_ids, ref_ids = img_ids.float(), ref_ids.float()
        img_ids[:, 1:3] *= 0.5
        ref_ids[:, 1:3] *= 0.5
        txt_ids = torch.cartesian_prod(torch.arange(1), torch.arange(1), torch.arange(1), torch.arange(80))
        velocity = reference(
            hidden_states=x.flatten(2).transpose(1, 2),
            encoder_hidden_states=context,
            timestep=sigma,
            img_ids=img_ids,
            txt_ids=txt_ids.float(),
            image_cond_hidden_states=ref.flatten(2).transpose(1, 2),
            image_cond_ids=ref_ids,
            target_timestep=torch.tensor([0.25]) if flow_map else None,
            return_dict=False,
        )[0]
    expected = x - 0.6 * velocity.transpose(1, 2).reshape(1, 128, 3, 4)
    assert (denoised - expected).abs().max() < 1e-4


def test_conditioning_is_eight_stacked_layers_padded_to_80(flux3_folders: Folders) -> None:
    from engine.models.flow_families import load_clip

    clip = load_clip([flux3_folders.model_path("text_encoders", TEXT)], "flux3")
    tokens = clip.tokenize("a red fox")
    window = tokens["qwen3vl_4b"][0]
    assert len(window) == 80 and window[-1][0] == 151643
    cond = clip.encode_from_tokens(tokens)
    assert tuple(cond.shape) == (1, 80, JOINT)


@pytest.mark.parametrize("name", [BASE, DISTILLED])
def test_text_to_image_runs_and_repeats(executor: Executor, flux3_folders: Folders, name: str) -> None:
    first = image_of(flux3_folders, run(executor, t2i_workflow(name, seed=3)))
    assert first.shape == (48, 64, 3) and first.std() > 0
    executor.cache.clear()
    again = image_of(flux3_folders, run(executor, t2i_workflow(name, seed=3)))
    other = image_of(flux3_folders, run(executor, t2i_workflow(name, seed=4)))
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_edit_runs_with_reference_multi_latent(executor: Executor, flux3_folders: Folders) -> None:
    pixels = image_of(flux3_folders, run(executor, edit_workflow(BASE, seed=2)))
    # the reference (80×64 at 0.01 MP → 112×80, a multiple of 16) sets the latent's size
    assert pixels.shape == (80, 112, 3)
    plain = t2i_workflow(BASE, seed=2)
    plain["6"]["inputs"].update(width=112, height=80)
    assert not np.array_equal(pixels, image_of(flux3_folders, run(executor, plain)))


def test_distilled_needs_the_schedule(flux3_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(flux3_models[0] / "diffusion_models" / DISTILLED)
    with pytest.raises(ValueError, match="flow map"):
        model.model.apply_model(
            torch.randn(1, 128, 2, 2), torch.tensor([0.5]), c_crossattn=torch.randn(1, 4, JOINT)
        )


def test_wrong_conditioning_width_is_a_clear_error(flux3_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(flux3_models[0] / "diffusion_models" / BASE)
    with pytest.raises(ValueError, match="CLIPLoader type flux3"):
        model.model.apply_model(
            torch.randn(1, 128, 2, 2), torch.tensor([0.5]), c_crossattn=torch.randn(1, 4, 96)
        )


def test_bounding_boxes_become_layout_elements_and_prompt() -> None:
    from nodes.conditioning.flux3_layout import CreateBoundingBoxes, Flux3LayoutPrompt

    boxes = [
        {"x": 128, "y": 192, "width": 736, "height": 896, "metadata": {"type": "obj", "desc": "dress"}},
        {
            "x": 0,
            "y": 0,
            "width": 448,
            "height": 100,
            "metadata": {"type": "text", "text": "SALE", "desc": "sign"},
        },
        {"x": 10, "y": 10, "width": 20, "height": 20, "metadata": {"type": "obj", "desc": "ring"}},
    ]
    preview, plain, elements = CreateBoundingBoxes().create(896, 1152, {"__value__": boxes}, [], None, None)
    assert tuple(preview.shape) == (1, 1152, 896, 3)
    assert plain[0] == {"x": 128, "y": 192, "width": 736, "height": 896}
    assert [e["id"] for e in elements] == ["obj_1", "text_1", "obj_2"]
    assert elements[0]["bbox"] == [167, 143, 944, 964] and elements[0]["desc"] == "dress"
    assert elements[1]["text"] == "SALE"
    (prompt,) = Flux3LayoutPrompt().build(elements, "In <ref_image_0>, change the dress <obj_1> to red")
    caption, table = prompt.split(" [", 1)
    assert caption == "In <ref_image_0>, change the dress <obj_1> to red <text_1> <obj_2>"
    assert json.loads("[" + table)[0] == {"id": "obj_1", "bbox": [167, 143, 944, 964], "desc": "dress"}
    assert Flux3LayoutPrompt().build([], "plain caption") == ("plain caption",)


def test_layout_nodes_give_clear_errors() -> None:
    from nodes.conditioning.flux3_layout import CreateBoundingBoxes, Flux3LayoutPrompt
    from nodes.conditioning.flux3_references import ReferenceMultiLatent

    with pytest.raises(ValueError, match="CreateBoundingBoxes: input 'boxes'"):
        CreateBoundingBoxes().create(64, 64, "not json", [], None, None)
    with pytest.raises(ValueError, match="Flux3LayoutPrompt: input 'element'"):
        Flux3LayoutPrompt().build(["x"], "caption")
    with pytest.raises(ValueError, match="ReferenceMultiLatent: connect at least one image"):
        ReferenceMultiLatent().attach([], "resize", 1.0)
    with pytest.raises(ValueError, match="ReferenceMultiLatent: input 'vae'"):
        ReferenceMultiLatent().attach([], "resize", 1.0, **{"images.image0": torch.zeros(1, 8, 8, 3)})


def test_reference_multi_latent_adds_every_image_to_both_conditionings(flux3_folders: Folders) -> None:
    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import open_state_dict
    from nodes.conditioning.flux3_references import ReferenceMultiLatent

    state, _ = open_state_dict(flux3_folders.model_path("vae", "flux2-vae.safetensors"))
    vae = vae_from_state_dict(dict(state), {}, "flux2-vae")
    positive = [[torch.zeros(1, 4, JOINT), {"reference_latents": ["earlier"]}]]
    images = {"images.image3": torch.rand(1, 40, 72, 3), "images.image0": torch.rand(1, 64, 48, 3)}
    pos, neg, empty = ReferenceMultiLatent().attach(positive, "none", 1.0, None, vae, **images)
    refs = pos[0][1]["reference_latents"]
    # image0 first (the order of the numbers), kept at its size cropped to 16s: 48×64 → 3×4 tokens
    assert refs[0] == "earlier" and [tuple(r.shape[-2:]) for r in refs[1:]] == [(4, 3), (2, 4)]
    assert neg is None and tuple(empty["samples"].shape) == (1, 128, 4, 3)
    assert not empty["samples"].any()


def test_layout_widgets_convert_from_the_ui_and_run(executor: Executor, loom_folders: Folders) -> None:
    """CreateBoundingBoxes' editor lists are widgets in a saved workflow (wrapped as the front end does)."""
    from engine.ui_workflow import ui_to_api

    boxes = [{"x": 0, "y": 0, "width": 32, "height": 64, "metadata": {"type": "obj", "desc": "cat"}}]
    workflow = {
        "nodes": [
            {
                "id": 1,
                "type": "CreateBoundingBoxes",
                "outputs": [{"name": "elements", "type": "ARRAY", "links": [1]}],
                "widgets_values": [64, 64, boxes, []],
            },
            {
                "id": 2,
                "type": "Flux3LayoutPrompt",
                "inputs": [{"name": "element", "type": "ARRAY", "link": 1}],
                "outputs": [{"name": "prompt", "type": "STRING", "links": [2]}],
                "widgets_values": ["a <obj_1> on a sofa"],
            },
            {"id": 3, "type": "PreviewAny", "inputs": [{"name": "source", "type": "*", "link": 2}]},
        ],
        "links": [[1, 1, 2, 2, 0, "ARRAY"], [2, 2, 0, 3, 0, "STRING"]],
    }
    prompt = ui_to_api(workflow, executor.registry)
    assert prompt["1"]["inputs"]["boxes"] == {"__value__": boxes}
    result = run(executor, prompt)
    assert result.status == "success", result.error
    text = result.outputs["3"]["text"][0]
    assert text == 'a <obj_1> on a sofa [{"id":"obj_1","bbox":[0,0,1000,500],"desc":"cat"}]'


def test_dit_replacements_reach_the_joint_blocks(flux3_models: tuple[Path, dict[str, Any]]) -> None:
    """A "dit" ("single_block", i) replacement (SkipLayerGuidanceDiT's mechanism) on Flux 3's joint blocks:
    one that runs the original block keeps the prediction, one that skips the block changes it."""
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(flux3_models[0] / "diffusion_models" / BASE).model
    torch.manual_seed(0)
    x, context, sigma = torch.randn(1, 128, 3, 4), torch.randn(1, 80, JOINT), torch.tensor([0.6])

    def predict(replacements: dict[tuple[str, int], Any]) -> torch.Tensor:
        options = {"patches_replace": {"dit": replacements}}
        extra = model.added_conditions([{}], x, 1)
        with torch.no_grad():
            return model.apply_model(
                x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
            )

    def keep(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        assert args["txt"].shape[1] == 80 and args["img"].shape[1] == 12
        return extra["original_block"](args)

    def skip(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        return {"img": args["img"], "txt": args["txt"]}

    plain = predict({})
    assert torch.equal(plain, predict({("single_block", 0): keep}))
    assert (plain - predict({("single_block", 0): skip})).abs().max() > 1e-4
