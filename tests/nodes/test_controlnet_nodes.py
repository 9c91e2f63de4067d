"""ControlNet and T2I-Adapter loaders and apply nodes on random-weight stand-ins in real key layouts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.nodes.controlnet_fixtures import CONTROLNET_FILES, SDXL_FILES, tiny_controlnet, write_control_files
from tests.nodes.harness import call

CONTROLNETS = ["cn_ldm.safetensors", "cn_bare.safetensors", "diffusion_pytorch_model.safetensors"]
ADAPTERS = ["t2i_full.safetensors", "t2i_light.safetensors", "t2i_full_diffusers.safetensors"]


@pytest.fixture(scope="session")
def control_dir(tiny_models_dir: Path) -> Path:
    folder = tiny_models_dir / "controlnet"
    if not folder.is_dir():
        write_control_files(folder)
    return folder


@pytest.fixture
def cn_folders(sd_folders: Folders, control_dir: Path) -> Folders:
    return sd_folders


def _base(executor: Executor, family: str) -> dict[str, Any]:
    model, clip, vae = call(executor, "CheckpointLoaderSimple", ckpt_name=f"tiny_{family}.safetensors")
    (positive,) = call(executor, "CLIPTextEncode", clip=clip, text="a red circle")
    (negative,) = call(executor, "CLIPTextEncode", clip=clip, text="")
    return {"model": model, "vae": vae, "positive": positive, "negative": negative}


@pytest.fixture
def sd1(executor: Executor, cn_folders: Folders) -> dict[str, Any]:
    return _base(executor, "sd1")


@pytest.fixture
def sdxl(executor: Executor, cn_folders: Folders) -> dict[str, Any]:
    return _base(executor, "sdxl")


HINT = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(5))


def sample(
    executor: Executor, sd1: dict[str, Any], positive: Any = None, negative: Any = None
) -> torch.Tensor:
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (out,) = call(
        executor,
        "KSampler",
        model=sd1["model"],
        seed=3,
        steps=4,
        cfg=5.0,
        sampler_name="euler",
        scheduler="normal",
        positive=positive if positive is not None else sd1["positive"],
        negative=negative if negative is not None else sd1["negative"],
        latent_image=latent,
        denoise=1.0,
    )
    return out["samples"]


def apply(executor: Executor, sd1: dict[str, Any], control: Any, **options: Any) -> tuple[Any, Any]:
    positive = options.pop("positive", sd1["positive"])
    negative = options.pop("negative", sd1["negative"])
    options = {"strength": 1.0, "start_percent": 0.0, "end_percent": 1.0} | options
    return call(
        executor, "ControlNetApplyAdvanced", positive=positive, negative=negative, control_net=control,
        image=options.pop("image", HINT), **options,
    )  # fmt: skip


def load(executor: Executor, name: str) -> Any:
    return call(executor, "ControlNetLoader", control_net_name=name)[0]


@pytest.mark.parametrize("name", sorted(CONTROLNET_FILES | SDXL_FILES))
def test_each_layout_is_detected(executor: Executor, cn_folders: Folders, name: str) -> None:
    control = load(executor, name)
    expected = {
        "control-lora-tiny.safetensors": "ControlLora",
        "control-lora-xl.safetensors": "ControlLora",
    }.get(name, "T2IAdapter" if name.startswith("t2i") else "ControlNet")
    assert type(control).__name__ == expected
    if name in CONTROLNETS:  # weights land where diffusers keeps them, whatever the file's names
        reference = tiny_controlnet().state_dict()
        loaded = control.control_model.state_dict()
        assert loaded.keys() == reference.keys()
        assert all(torch.equal(loaded[k], reference[k]) for k in reference)


def test_diff_controlnet_adds_the_models_weights(executor: Executor, cn_folders: Folders, sd1: dict) -> None:
    (control,) = call(
        executor, "DiffControlNetLoader", model=sd1["model"], control_net_name="cn_diff.safetensors"
    )
    reference = tiny_controlnet().state_dict()
    loaded = control.control_model.state_dict()
    assert all(torch.allclose(loaded[k], reference[k], atol=1e-6) for k in reference)
    (plain,) = call(
        executor, "DiffControlNetLoader", model=sd1["model"], control_net_name="cn_ldm.safetensors"
    )
    assert all(torch.equal(plain.control_model.state_dict()[k], reference[k]) for k in reference)


def test_a_file_that_is_not_a_controlnet_is_named_with_node_and_input(
    executor: Executor, cn_folders: Folders
) -> None:
    prompt = {
        "1": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "a_lora.safetensors"}},
        "2": {"class_type": "SetUnionControlNetType", "inputs": {"control_net": ["1", 0], "type": "auto"}},
        "3": {"class_type": "ControlNetApply", "inputs": {
            "conditioning": ["4", 0], "control_net": ["2", 0], "image": ["5", 0], "strength": 1.0}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["6", 1]}},
        "5": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "6": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sd1.safetensors"}},
        "7": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["3", 0]}},
        "8": {"class_type": "KSampler", "inputs": {
            "model": ["6", 0], "positive": ["3", 0], "negative": ["7", 0], "latent_image": ["9", 0],
            "seed": 1, "steps": 1, "cfg": 1.0, "sampler_name": "euler", "scheduler": "normal",
            "denoise": 1.0}},
        "9": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "10": {"class_type": "PreviewAny", "inputs": {"source": ["8", 0]}},
    }  # fmt: skip
    registry = executor.registry
    if "PreviewAny" not in registry:
        prompt["10"] = {"class_type": "VAEDecode", "inputs": {"samples": ["8", 0], "vae": ["6", 2]}}
        prompt["11"] = {"class_type": "PreviewImage", "inputs": {"images": ["10", 0]}}
    checked = validate_prompt(registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "bad", checked.outputs)
    assert result.status == "error"
    message = str(result.error)
    assert "ControlNetLoader" in message and "control_net_name" in message and "a_lora.safetensors" in message


@pytest.mark.parametrize("name", [CONTROLNETS[0], "control-lora-tiny.safetensors", *ADAPTERS[:2]])
def test_apply_changes_the_result_and_strength_zero_is_a_no_op(
    executor: Executor, cn_folders: Folders, sd1: dict, name: str
) -> None:
    control = load(executor, name)
    baseline = sample(executor, sd1)
    positive, negative = apply(executor, sd1, control, strength=0.0)
    assert positive is sd1["positive"] and negative is sd1["negative"]
    assert torch.equal(sample(executor, sd1, positive, negative), baseline)
    positive, negative = apply(executor, sd1, control, strength=1.0)
    assert positive[0][1]["control"] is negative[0][1]["control"]  # one copy: cond and uncond batch together
    guided = sample(executor, sd1, positive, negative)
    assert (guided - baseline).abs().mean() > 1e-3
    weaker = sample(executor, sd1, *apply(executor, sd1, control, strength=0.5))
    assert 0 < (weaker - baseline).abs().mean() < (guided - baseline).abs().mean()


def _count_runs(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda *_: calls.append(1))
    return calls


def test_start_and_end_percent_limit_the_steps_it_acts_on(
    executor: Executor, cn_folders: Folders, sd1: dict
) -> None:
    control = load(executor, CONTROLNETS[0])
    runs = _count_runs(control.control_model)
    baseline = sample(executor, sd1)
    full = sample(executor, sd1, *apply(executor, sd1, control))
    assert len(runs) == 4  # one batched cond+uncond run per step
    runs.clear()
    first_half = sample(executor, sd1, *apply(executor, sd1, control, start_percent=0.0, end_percent=0.5))
    assert 1 <= len(runs) < 4
    assert not torch.equal(first_half, baseline) and not torch.equal(first_half, full)
    runs.clear()
    never = sample(executor, sd1, *apply(executor, sd1, control, start_percent=1.0, end_percent=1.0))
    assert runs == [] and torch.equal(never, baseline)


def test_chained_controlnets_add_up(executor: Executor, cn_folders: Folders, sd1: dict) -> None:
    first, second = load(executor, CONTROLNETS[0]), load(executor, "t2i_full.safetensors")
    positive, negative = apply(executor, sd1, first)
    only_first = sample(executor, sd1, positive, negative)
    chained = apply(executor, sd1, second, positive=positive, negative=negative)
    assert chained[0][0][1]["control"].previous_controlnet is positive[0][1]["control"]
    both = sample(executor, sd1, *chained)
    only_second = sample(executor, sd1, *apply(executor, sd1, second))
    assert not torch.equal(both, only_first) and not torch.equal(both, only_second)
    noop = apply(executor, sd1, second, positive=positive, negative=negative, strength=0.0)
    assert torch.equal(sample(executor, sd1, *noop), only_first)


def test_old_apply_node_also_guides_the_negative_side(
    executor: Executor, cn_folders: Folders, sd1: dict
) -> None:
    control = load(executor, CONTROLNETS[0])
    runs = _count_runs(control.control_model)
    (positive,) = call(
        executor,
        "ControlNetApply",
        conditioning=sd1["positive"],
        control_net=control,
        image=HINT,
        strength=1.0,
    )
    assert positive[0][1]["control_apply_to_uncond"] is True
    guided = sample(executor, sd1, positive, sd1["negative"])
    assert len(runs) == 4 and not torch.equal(guided, sample(executor, sd1))
    (same,) = call(
        executor,
        "ControlNetApply",
        conditioning=sd1["positive"],
        control_net=control,
        image=HINT,
        strength=0.0,
    )
    assert same is sd1["positive"]


def test_union_type_and_inpainting_apply(executor: Executor, cn_folders: Folders, sd1: dict) -> None:
    control = load(executor, CONTROLNETS[0])
    (typed,) = call(executor, "SetUnionControlNetType", control_net=control, type="depth")
    assert typed.extra_args["control_type"] == [1] and "control_type" not in control.extra_args
    (auto,) = call(executor, "SetUnionControlNetType", control_net=control, type="auto")
    assert auto.extra_args["control_type"] == []
    mask = torch.zeros(1, 64, 64)
    positive, negative = call(
        executor, "ControlNetInpaintingAliMamaApply", positive=sd1["positive"], negative=sd1["negative"],
        control_net=control, vae=sd1["vae"], image=HINT, mask=mask, strength=1.0, start_percent=0.0,
        end_percent=1.0,
    )  # fmt: skip
    expected = sample(executor, sd1, *apply(executor, sd1, control))
    assert torch.equal(sample(executor, sd1, positive, negative), expected)


def test_node_definitions_match_comfyui(executor: Executor) -> None:
    specs = {name: executor.registry.get(name) for name in (
        "ControlNetLoader", "DiffControlNetLoader", "ControlNetApply", "ControlNetApplyAdvanced",
        "SetUnionControlNetType", "ControlNetInpaintingAliMamaApply")}  # fmt: skip
    inputs = {
        name: [(i.name, i.section, i.options.get("default")) for i in spec.inputs]
        for name, spec in specs.items()
        if spec
    }
    assert inputs["ControlNetApplyAdvanced"] == [
        ("positive", "required", None), ("negative", "required", None), ("control_net", "required", None),
        ("image", "required", None), ("strength", "required", 1.0), ("start_percent", "required", 0.0),
        ("end_percent", "required", 1.0), ("vae", "optional", None),
    ]  # fmt: skip
    assert [o.name for o in specs["ControlNetApplyAdvanced"].outputs] == ["positive", "negative"]
    assert inputs["DiffControlNetLoader"][0][0] == "model"
    assert {s.category for n, s in specs.items() if "Loader" not in n} == {"conditioning/controlnet"}
    assert [o.type for o in specs["ControlNetLoader"].outputs] == ["CONTROL_NET"]
    info = executor.registry.object_info()
    assert (
        info["ControlNetApply"]["deprecated"] is True and "deprecated" not in info["ControlNetApplyAdvanced"]
    )


@pytest.mark.parametrize(
    "name", ["xl_cn_ldm.safetensors", "xl_cn_diffusers.safetensors", "control-lora-xl.safetensors"]
)
def test_sdxl_controlnets_guide_the_sdxl_model(
    executor: Executor, cn_folders: Folders, sdxl: dict, name: str
) -> None:
    control = load(executor, name)
    baseline = sample(executor, sdxl)
    assert torch.equal(sample(executor, sdxl, *apply(executor, sdxl, control, strength=0.0)), baseline)
    assert (sample(executor, sdxl, *apply(executor, sdxl, control)) - baseline).abs().mean() > 1e-3


def test_union_controlnet_follows_its_type(executor: Executor, cn_folders: Folders, sdxl: dict) -> None:
    union = load(executor, "xl_union.safetensors")
    assert type(union.control_model).__name__ == "ControlNetUnionModel"
    baseline = sample(executor, sdxl)
    results = {}
    for kind in ("auto", "depth", "canny/lineart/anime_lineart/mlsd"):
        (typed,) = call(executor, "SetUnionControlNetType", control_net=union, type=kind)
        results[kind] = sample(executor, sdxl, *apply(executor, sdxl, typed))
        assert (results[kind] - baseline).abs().mean() > 1e-3
    assert not torch.equal(results["auto"], results["depth"])
    assert not torch.equal(results["depth"], results["canny/lineart/anime_lineart/mlsd"])


def test_loader_lists_models_t2i_adapter_too(executor: Executor, loom_folders: Folders) -> None:
    from tests.nodes.controlnet_fixtures import write_adapter

    folder = loom_folders.models["controlnet"][1]
    assert folder.name == "t2i_adapter"
    folder.mkdir(parents=True)
    write_adapter(folder / "t2iadapter_depth.safetensors", "light_adapter")
    spec = executor.registry.get("ControlNetLoader")
    assert spec is not None and "t2iadapter_depth.safetensors" in spec.inputs[0].choices()
    assert type(load(executor, "t2iadapter_depth.safetensors")).__name__ == "T2IAdapter"


def test_a_controlnet_of_another_family_fails_with_a_clear_error(
    executor: Executor, cn_folders: Folders
) -> None:
    prompt = {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sdxl.safetensors"}},
        "text": {"class_type": "CLIPTextEncode", "inputs": {"text": "x", "clip": ["ckpt", 1]}},
        "cn": {"class_type": "ControlNetLoader", "inputs": {"control_net_name": "cn_ldm.safetensors"}},
        "hint": {"class_type": "EmptyImage",
                 "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
        "apply": {"class_type": "ControlNetApplyAdvanced", "inputs": {
            "positive": ["text", 0], "negative": ["text", 0], "control_net": ["cn", 0], "image": ["hint", 0],
            "strength": 1.0, "start_percent": 0.0, "end_percent": 1.0}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "sample": {"class_type": "KSampler", "inputs": {
            "model": ["ckpt", 0], "positive": ["apply", 0], "negative": ["apply", 1],
            "latent_image": ["latent", 0], "seed": 1, "steps": 1, "cfg": 2.0, "sampler_name": "euler",
            "scheduler": "normal", "denoise": 1.0}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "show": {"class_type": "PreviewImage", "inputs": {"images": ["decode", 0]}},
    }  # fmt: skip
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "family", checked.outputs)
    assert result.status == "error" and "another model family" in str(result.error)


@pytest.mark.parametrize(
    "name", ["t2i_xl.safetensors", "control-lora-xl.safetensors", "xl_cn_ldm.safetensors"]
)
def test_a_control_model_of_another_family_names_its_file(
    executor: Executor, cn_folders: Folders, sd1: dict, name: str
) -> None:
    """SDXL control files on an SD1 model: the mismatch shows only while sampling, and the error names
    the file, not a tensor shape deep inside torch."""
    positive, negative = apply(executor, sd1, load(executor, name))
    with pytest.raises(Exception, match=rf"{re.escape(name)}.*(does not fit|another model family)"):
        sample(executor, sd1, positive, negative)
