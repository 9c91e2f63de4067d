"""ControlNets of SD3/SD3.5, Flux.1 and Qwen-Image end to end: tiny stand-ins in the files' real key
layouts, loaded by ControlNetLoader, applied with Apply ControlNet (and its VAE), sampled by KSampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import save_file

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_controlnet_fixtures import (
    flux_instantx_controlnet,
    qwen_fun_controlnet,
    qwen_instantx_controlnet,
    sd3_instantx_controlnet,
    sd35_controlnet,
    xlabs_flux_controlnet,
)
from tests.nodes.flow_fixtures import (
    _save,
    flux_workflow,
    sd3_to_comfy,
    sd3_workflow,
    tiny_sd3_transformer,
    write_flux_files,
    write_sd3_files,
)
from tests.nodes.flow_fixtures_new import qwen_image_workflow, write_qwen_image_files
from tests.nodes.test_sd_nodes import image_of, run

CONTROLNETS = {
    "sd3.5_large_controlnet_canny.safetensors": lambda: sd35_controlnet(control_type=1),
    "sd3.5_large_controlnet_blur.safetensors": lambda: sd35_controlnet(seed=44, control_type=0),
    "sd3_controlnet_canny.safetensors": lambda: sd3_instantx_controlnet(),
    "instantx_flux_canny.safetensors": lambda: flux_instantx_controlnet(),
    "flux_union_pro.safetensors": lambda: flux_instantx_controlnet(seed=45, union=True),
    "flux-canny-controlnet-v3.safetensors": lambda: xlabs_flux_controlnet(),
    "Qwen-Image-2512-Fun-Controlnet-Union-2602.safetensors": lambda: qwen_fun_controlnet(),
    "Qwen-Image-Fun-Controlnet-wide.safetensors": lambda: qwen_fun_controlnet(seed=60, width=256, blocks=1),
    "Qwen-Image-Fun-Controlnet-broken.safetensors": lambda: {
        k: v for k, v in qwen_fun_controlnet(seed=61).items() if k != "control_blocks.1.attn.to_k.weight"
    },
    "flux_inpainting.safetensors": lambda: flux_instantx_controlnet(seed=46, inpaint=True),
    "Qwen-Image-InstantX-ControlNet-Union.safetensors": lambda: qwen_instantx_controlnet(),
    "Qwen-Image-InstantX-ControlNet-Inpainting.safetensors": lambda: qwen_instantx_controlnet(
        47, inpaint=True
    ),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow_controlnets")
    write_sd3_files(root)
    write_flux_files(root)
    write_qwen_image_files(root)
    wide = tiny_sd3_transformer(seed=6, heads=2)  # 128 wide: an InstantX SD3 ControlNet reaches 2 blocks
    _save(root / "diffusion_models" / "tiny_sd3_wide.safetensors", sd3_to_comfy(wide.state_dict(), 2))
    (root / "controlnet").mkdir()
    for name, make in CONTROLNETS.items():
        save_file(make(), str(root / "controlnet" / name))
    return root


@pytest.fixture
def folders(loom_folders: Folders, models: Path) -> Folders:
    loom_folders.models = Folders.under(models.parent, models_base=models).models
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[16:48, 20:28] = 255
    PILImage.fromarray(pixels).save(loom_folders.input / "edges.png")
    return loom_folders


def controlled(
    prompt: dict[str, Any],
    sampler: str,
    vae: list[Any] | None,
    name: str,
    strength: float = 1.0,
    node: str = "ControlNetApplyAdvanced",
) -> dict[str, Any]:
    """`prompt` with the named ControlNet applied to the sampler's positive and negative conditioning."""
    inputs = prompt[sampler]["inputs"]
    prompt["80"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": name}}
    prompt["81"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    prompt["82"] = {
        "class_type": node,
        "inputs": {
            "positive": inputs["positive"],
            "negative": inputs["negative"],
            "control_net": ["80", 0],
            "image": ["81", 0],
            "strength": strength,
            "start_percent": 0.0,
            "end_percent": 1.0,
            **({"vae": vae} if vae is not None else {}),
        },
    }
    if node == "ControlNetInpaintingAliMamaApply":
        prompt["83"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
        prompt["84"] = {
            "class_type": "CropMask",
            "inputs": {"mask": ["83", 0], "x": 0, "y": 0, "width": 64, "height": 32},
        }
        prompt["82"]["inputs"]["mask"] = ["84", 0]
    inputs["positive"], inputs["negative"] = ["82", 0], ["82", 1]
    return prompt


def _sd3(unet: str = "tiny_sd3.safetensors") -> dict[str, Any]:
    prompt = sd3_workflow(seed=2)
    prompt["1"]["inputs"]["unet_name"] = unet
    return prompt


# (base graph, sampler node, VAE, output node) per family.
FAMILIES = {
    "sd3.5": (lambda: _sd3(), "9", ["3", 0], "11"),
    "sd3": (lambda: _sd3("tiny_sd3_wide.safetensors"), "9", ["3", 0], "11"),
    "flux": (lambda: flux_workflow(seed=2), "31", ["10", 0], "9"),
    "qwen": (lambda: qwen_image_workflow(seed=2), "3", ["39", 0], "60"),
}
CASES = [
    ("sd3.5", "sd3.5_large_controlnet_canny.safetensors"),
    ("sd3.5", "sd3.5_large_controlnet_blur.safetensors"),
    ("sd3", "sd3_controlnet_canny.safetensors"),
    ("flux", "instantx_flux_canny.safetensors"),
    ("flux", "flux_union_pro.safetensors"),
    ("flux", "flux-canny-controlnet-v3.safetensors"),
    ("qwen", "Qwen-Image-InstantX-ControlNet-Union.safetensors"),
    ("qwen", "Qwen-Image-2512-Fun-Controlnet-Union-2602.safetensors"),
]


@pytest.mark.parametrize(("family", "name"), CASES)
def test_controlnet_steers_the_image_and_strength_zero_does_not(
    executor: Executor, folders: Folders, family: str, name: str
) -> None:
    base, sampler, vae, out = FAMILIES[family]
    plain = image_of(folders, run(executor, base()), out).astype(int)
    steered = image_of(folders, run(executor, controlled(base(), sampler, vae, name)), out).astype(int)
    off = image_of(folders, run(executor, controlled(base(), sampler, vae, name, strength=0.0)), out)
    assert np.abs(steered - plain).mean() > 0.5
    assert np.array_equal(off.astype(int), plain)


@pytest.mark.parametrize(
    ("family", "name"),
    [
        ("flux", "flux_inpainting.safetensors"),
        ("qwen", "Qwen-Image-InstantX-ControlNet-Inpainting.safetensors"),
    ],
)
def test_inpainting_controlnets_take_the_mask(
    executor: Executor, folders: Folders, family: str, name: str
) -> None:
    base, sampler, vae, out = FAMILIES[family]
    plain = image_of(folders, run(executor, base()), out).astype(int)
    prompt = controlled(base(), sampler, vae, name, node="ControlNetInpaintingAliMamaApply")
    steered = image_of(folders, run(executor, prompt), out).astype(int)
    assert np.abs(steered - plain).mean() > 0.5


def test_union_type_changes_the_control(executor: Executor, folders: Folders) -> None:
    base, sampler, vae, out = FAMILIES["flux"]
    auto = image_of(
        folders, run(executor, controlled(base(), sampler, vae, "flux_union_pro.safetensors")), out
    )
    prompt = controlled(base(), sampler, vae, "flux_union_pro.safetensors")
    prompt["85"] = {
        "class_type": "SetUnionControlNetType",
        "inputs": {"control_net": ["80", 0], "type": "depth"},
    }
    prompt["82"]["inputs"]["control_net"] = ["85", 0]
    typed = image_of(folders, run(executor, prompt), out)
    assert not np.array_equal(auto, typed)


@pytest.mark.parametrize(
    ("family", "name", "vae", "message"),
    [
        (
            "sd3.5",
            "instantx_flux_canny.safetensors",
            True,
            "is made for Flux.1 models; the model being sampled is sd3",
        ),
        ("flux", "Qwen-Image-InstantX-ControlNet-Union.safetensors", True, "is made for Qwen-Image models"),
        ("qwen", "sd3.5_large_controlnet_canny.safetensors", True, "is made for SD3/SD3.5 models"),
        ("flux", "instantx_flux_canny.safetensors", False, "needs a VAE: connect one to the vae input"),
        ("flux", "Qwen-Image-2512-Fun-Controlnet-Union-2602.safetensors", True, "is made for Qwen-Image"),
        (
            "qwen",
            "Qwen-Image-Fun-Controlnet-wide.safetensors",
            True,
            "this Qwen-Image Fun ControlNet is 256 wide; the Qwen-Image model being sampled is 128 wide",
        ),
        (
            "qwen",
            "Qwen-Image-Fun-Controlnet-broken.safetensors",
            True,
            "ControlNetLoader: control_net_name 'Qwen-Image-Fun-Controlnet-broken.safetensors' cannot be "
            "used: Qwen-Image-Fun-Controlnet-broken.safetensors: looks like a ControlNet but its weights do "
            "not fit: not a Qwen-Image Fun ControlNet layout: keys ['control_blocks.1.attn.to_k.weight']",
        ),
    ],
)
def test_controlnet_for_another_model_is_refused_by_name(
    executor: Executor, folders: Folders, family: str, name: str, vae: bool, message: str
) -> None:
    base, sampler, vae_input, _ = FAMILIES[family]
    result = run(executor, controlled(base(), sampler, vae_input if vae else None, name))
    assert result.status == "error"
    assert name in result.error["exception_message"] and message in result.error["exception_message"]


def test_sd35_controlnet_weights_load_exactly(folders: Folders) -> None:
    from engine.models.controlnet import load_controlnet

    path = folders.model_path("controlnet", "sd3.5_large_controlnet_canny.safetensors")
    control = load_controlnet(path)
    net = control.control_model.net
    fused = sd35_controlnet(control_type=1)["transformer_blocks.0.attn.qkv.weight"]
    assert torch.equal(
        torch.cat(
            [
                net.transformer_blocks[0].attn.to_q.weight,
                net.transformer_blocks[0].attn.to_k.weight,
                net.transformer_blocks[0].attn.to_v.weight,
            ]
        ),
        fused,
    )
    assert control.preprocess_image(torch.ones(1)).item() == 128.0  # canny: ComfyUI's ×127.5 + 0.5


def test_chained_controlnets_and_percent_range(executor: Executor, folders: Folders) -> None:
    base, sampler, vae, out = FAMILIES["sd3.5"]
    canny = image_of(folders, run(executor, controlled(base(), sampler, vae, CASES[0][1])), out).astype(int)
    prompt = controlled(base(), sampler, vae, CASES[0][1])
    prompt["90"] = {"class_type": "ControlNetLoader", "inputs": {"control_net_name": CASES[1][1]}}
    prompt["91"] = {
        "class_type": "ControlNetApplyAdvanced",
        "inputs": {
            "positive": ["82", 0],
            "negative": ["82", 1],
            "control_net": ["90", 0],
            "image": ["81", 0],
            "strength": 0.8,
            "start_percent": 0.0,
            "end_percent": 1.0,
            "vae": vae,
        },
    }
    prompt[sampler]["inputs"]["positive"], prompt[sampler]["inputs"]["negative"] = ["91", 0], ["91", 1]
    chained = image_of(folders, run(executor, prompt), out).astype(int)
    assert np.abs(chained - canny).mean() > 0.5
    late = controlled(base(), sampler, vae, CASES[0][1])
    late["82"]["inputs"]["start_percent"] = 0.5
    partial = image_of(folders, run(executor, late), out).astype(int)
    plain = image_of(folders, run(executor, base()), out).astype(int)
    assert not np.array_equal(partial, canny) and not np.array_equal(partial, plain)
