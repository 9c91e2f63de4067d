"""StyleModelLoader/StyleModelApply and GLIGENLoader/GLIGENTextBoxApply on random-weight stand-ins in the
released key layouts, on the tiny SD1.x checkpoint."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.models.tiny import TEXT_WIDTH
from engine.ui_workflow import ui_to_api
from tests.nodes.harness import call
from tests.nodes.vision_fixtures import (
    capture,
    gligen_layout,
    hf_layout,
    style_layout,
    tiny_vision,
    write,
)
from tests.nodes.vision_workflows import gligen_example, style_model_example


@pytest.fixture
def guided_folders(sd_folders: Folders) -> Folders:
    models = sd_folders.models
    write(models["clip_vision"][0] / "clip_vit_l.safetensors", hf_layout(tiny_vision(0)))
    write(models["style_models"][0] / "t2i_style.safetensors", style_layout())
    write(models["gligen"][0] / "gligen_textbox.safetensors", gligen_layout())
    write(models["gligen"][0] / "gligen_gates_off.safetensors", gligen_layout(alpha=0.0))
    write(models["gligen"][0] / "gligen_prefixed.safetensors", gligen_layout(prefix="model.diffusion_model."))
    for kind in ("style_models", "gligen"):
        write(models[kind][0] / "lora_like.safetensors", {"lora_unet_down.lora_up.weight": torch.zeros(4, 4)})
    PILImage.new("RGB", (40, 32), (200, 120, 30)).save(sd_folders.input / "mountains.png")
    return sd_folders


def _sd1(executor: Executor) -> tuple[Any, Any, Any, Any]:
    model, clip, _ = call(executor, "CheckpointLoaderSimple", ckpt_name="tiny_sd1.safetensors")
    (positive,) = call(executor, "CLIPTextEncode", text="a red circle", clip=clip)
    (negative,) = call(executor, "CLIPTextEncode", text="", clip=clip)
    return model, clip, positive, negative


def _sample(executor: Executor, model: Any, positive: Any, negative: Any) -> torch.Tensor:
    (latent,) = call(executor, "EmptyLatentImage", width=64, height=64, batch_size=1)
    (out,) = call(
        executor, "KSampler", model=model, seed=3, steps=2, cfg=4.0, sampler_name="euler",
        scheduler="normal", positive=positive, negative=negative, latent_image=latent, denoise=1.0,
    )  # fmt: skip
    return out["samples"]


def _error(executor: Executor, node: str, inputs: dict[str, Any]) -> str:
    prompt = {"1": {"class_type": node, "inputs": inputs}}
    checked = validate_prompt(executor.registry, prompt | capture(executor, "1"))
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "bad", checked.outputs)
    assert result.status == "error"
    return str(result.error)


def test_style_model_appends_scaled_tokens_and_changes_the_output(
    executor: Executor, guided_folders: Folders
) -> None:
    model, _, positive, negative = _sd1(executor)
    (vision,) = call(executor, "CLIPVisionLoader", clip_name="clip_vit_l.safetensors")
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 28, 28, 3), crop="center"
    )
    (style,) = call(executor, "StyleModelLoader", style_model_name="t2i_style.safetensors")
    tokens = style.get_cond(encoded)
    assert tokens.shape == (1, 8, TEXT_WIDTH)
    (styled,) = call(executor, "StyleModelApply", conditioning=positive, style_model=style,
                     clip_vision_output=encoded, strength=0.5, strength_type="multiply")  # fmt: skip
    text = positive[0][0]
    assert styled[0][0].shape == (1, text.shape[1] + 8, TEXT_WIDTH)
    torch.testing.assert_close(styled[0][0][:, : text.shape[1]], text)
    torch.testing.assert_close(styled[0][0][:, text.shape[1] :], tokens * 0.5)
    assert "attention_mask" not in styled[0][1]
    assert (
        _sample(executor, model, styled, negative) - _sample(executor, model, positive, negative)
    ).abs().max() > 1e-4


def test_style_attn_bias_records_comfyuis_mask(executor: Executor, guided_folders: Folders) -> None:
    _, _, positive, _ = _sd1(executor)
    (vision,) = call(executor, "CLIPVisionLoader", clip_name="clip_vit_l.safetensors")
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 28, 28, 3), crop="center"
    )
    (style,) = call(executor, "StyleModelLoader", style_model_name="t2i_style.safetensors")
    (biased,) = call(executor, "StyleModelApply", conditioning=positive, style_model=style,
                     clip_vision_output=encoded, strength=0.5, strength_type="attn_bias")  # fmt: skip
    n_txt = positive[0][0].shape[1]
    mask = biased[0][1]["attention_mask"]
    assert mask.shape == (1, n_txt + 8 + 1, n_txt + 8 + 1) and biased[0][1]["attention_mask_img_shape"] == (
        1,
        1,
    )
    assert torch.allclose(mask[:, :n_txt, n_txt : n_txt + 8].float(), torch.tensor(math.log(0.5)), atol=1e-3)
    assert mask[:, :n_txt, :n_txt].abs().max() == 0
    torch.testing.assert_close(biased[0][0][:, n_txt:], style.get_cond(encoded))  # not scaled


def test_style_loader_names_a_wrong_file(executor: Executor, guided_folders: Folders) -> None:
    message = _error(executor, "StyleModelLoader", {"style_model_name": "lora_like.safetensors"})
    assert (
        "StyleModelLoader" in message and "style_model_name" in message and "lora_like.safetensors" in message
    )
    assert "no style_embedding" in message


def test_gligen_loads_one_fuser_per_transformer_in_either_prefix(
    executor: Executor, guided_folders: Folders
) -> None:
    for name in ("gligen_textbox.safetensors", "gligen_prefixed.safetensors"):
        (gligen,) = call(executor, "GLIGENLoader", gligen_name=name)
        assert len(gligen.model.module_list) == 4 and gligen.model.key_dim == TEXT_WIDTH
        assert [m.linear.out_features for m in gligen.model.module_list] == [32, 64, 32, 32]


def test_gligen_boxes_change_the_output_and_closed_gates_leave_it(
    executor: Executor, guided_folders: Folders
) -> None:
    model, clip, positive, negative = _sd1(executor)
    plain = _sample(executor, model, positive, negative)
    outputs = {}
    for name in ("gligen_textbox.safetensors", "gligen_gates_off.safetensors"):
        (gligen,) = call(executor, "GLIGENLoader", gligen_name=name)
        box = {"clip": clip, "gligen_textbox_model": gligen}
        (boxed,) = call(executor, "GLIGENTextBoxApply", conditioning_to=positive, text="a blue square",
                        width=32, height=24, x=8, y=16, **box)  # fmt: skip
        (two,) = call(executor, "GLIGENTextBoxApply", conditioning_to=boxed, text="sun",
                      width=16, height=16, x=40, y=0, **box)  # fmt: skip
        kind, _, boxes = two[0][1]["gligen"]
        assert kind == "position" and [b[1:] for b in boxes] == [(3, 4, 2, 1), (2, 2, 0, 5)]
        outputs[name] = _sample(executor, model, two, negative)
    assert (outputs["gligen_textbox.safetensors"] - plain).abs().max() > 1e-4
    torch.testing.assert_close(outputs["gligen_gates_off.safetensors"], plain)


def test_gligen_grounding_tokens_follow_the_boxes(executor: Executor, guided_folders: Folders) -> None:
    (gligen,) = call(executor, "GLIGENLoader", gligen_name="gligen_textbox.safetensors")
    net = gligen.model.position_net
    phrase = torch.randn(1, TEXT_WIDTH)
    objs = gligen.model.objects((2, 4, 8, 8), [(phrase, 4, 2, 1, 3)], "cpu")
    boxes = torch.zeros(1, 30, 4)
    boxes[0, 0] = torch.tensor([3 / 8, 1 / 8, 5 / 8, 5 / 8])
    masks = torch.zeros(1, 30)
    masks[0, 0] = 1
    phrases = torch.zeros(1, 30, TEXT_WIDTH)
    phrases[0, 0] = phrase
    expected = net(boxes=boxes, masks=masks, positive_embeddings=phrases)
    assert objs.shape == (2, 30, TEXT_WIDTH)
    torch.testing.assert_close(objs[1:], expected)


def test_gligen_loader_names_a_wrong_file(executor: Executor, guided_folders: Folders) -> None:
    message = _error(executor, "GLIGENLoader", {"gligen_name": "lora_like.safetensors"})
    assert "GLIGENLoader" in message and "gligen_name" in message and "not a GLIGEN model" in message


def _run_ui(executor: Executor, folders: Folders, workflow: dict[str, Any]) -> np.ndarray:
    prompt = ui_to_api(json.loads(json.dumps(workflow)), executor.registry)
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "wf", checked.outputs)
    assert result.status == "success", result.error
    saved = next(iter(result.outputs.values()))["images"][0]["filename"]
    return np.asarray(PILImage.open(folders.output / saved))


def test_style_and_gligen_workflows_convert_validate_and_run(
    executor: Executor, guided_folders: Folders
) -> None:
    styled = style_model_example("tiny_sd1.safetensors", "clip_vit_l.safetensors", "t2i_style.safetensors")
    assert _run_ui(executor, guided_folders, styled).shape == (16, 16, 3)  # the tiny VAE scales by 2
    boxes = gligen_example("tiny_sd1.safetensors", "gligen_textbox.safetensors")
    assert _run_ui(executor, guided_folders, boxes).shape == (16, 16, 3)


def test_a_packs_middle_patch_runs_once_per_transformer(executor: Executor, guided_folders: Folders) -> None:
    model, _, positive, negative = _sd1(executor)
    seen: list[int] = []

    def middle(x: torch.Tensor, extra_options: dict[str, Any]) -> torch.Tensor:
        seen.append(extra_options["transformer_index"])
        return x

    patched = model.clone()
    patched.set_model_patch(middle, "middle_patch")
    torch.testing.assert_close(
        _sample(executor, patched, positive, negative), _sample(executor, model, positive, negative)
    )
    assert seen[:4] == [0, 1, 2, 3] and len(seen) == 2 * 4  # two steps, cond and uncond in one batch
