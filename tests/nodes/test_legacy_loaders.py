"""HypernetworkLoader (A1111 files in their real layout), CheckpointLoader (what ComfyUI reads from
its config) and DiffusersLoader (diffusers folders) on the tiny SD1 model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.diffusion.hypernetwork import build_network, load_hypernetwork_patch
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.nodes.merge_fixtures import hypernetwork_module, write_diffusers_folder, write_hypernetwork
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_model_patch_nodes import close, differs, latent
from tests.nodes.test_model_saving import image, run

CKPT = "tiny_sd1.safetensors"
TEXT_WIDTH = 64  # the tiny SD1 text encoder's width: the cross-attention context of every attn2
UNET_WIDTH = 32  # the channels of the tiny UNet's attention level: attn1's context


def with_hypernetwork(name: str, strength: float) -> dict[str, Any]:
    prompt = text_to_image(CKPT)
    prompt["10"] = {
        "class_type": "HypernetworkLoader",
        "inputs": {"model": ["4", 0], "hypernetwork_name": name, "strength": strength},
    }
    prompt["3"]["inputs"]["model"] = ["10", 0]
    return prompt


@pytest.fixture
def hypernetworks(sd_folders: Folders, tmp_path: Path) -> Path:
    folder = tmp_path / "hypernetworks"
    sd_folders.models["hypernetworks"] = [folder]
    write_hypernetwork(folder / "cross.pt", (TEXT_WIDTH,))
    write_hypernetwork(folder / "both_ln.pt", (TEXT_WIDTH, UNET_WIDTH), activation="tanh", layer_norm=True)
    return folder


def test_hypernetwork_changes_sampling_and_strength_zero_does_not(
    executor: Executor, sd_folders: Folders, hypernetworks: Path
) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    for name in ("cross.pt", "both_ln.pt"):
        assert differs(latent(executor, sd_folders, with_hypernetwork(name, 1.0)), plain)
        # k + net(k) * 0 == k: the same model, run through the attention-patch path.
        assert close(latent(executor, sd_folders, with_hypernetwork(name, 0.0)), plain)
    assert executor.registry.get("HypernetworkLoader").inputs[1].choices() == ["both_ln.pt", "cross.pt"]  # type: ignore[union-attr, misc]


def test_hypernetwork_patch_math_by_hand(hypernetworks: Path) -> None:
    patch = load_hypernetwork_patch(hypernetworks / "cross.pt", 0.7)
    generator = torch.Generator().manual_seed(3)
    n, k = torch.randn(1, 5, 32, generator=generator), torch.randn(1, 7, TEXT_WIDTH, generator=generator)
    saved = torch.load(str(hypernetworks / "cross.pt"), weights_only=True)
    key_net = saved[TEXT_WIDTH][0]

    def by_hand(x: torch.Tensor) -> torch.Tensor:  # Linear → ReLU → Linear (no activation after the last)
        hidden = torch.relu(x @ key_net["linear.0.weight"].T + key_net["linear.0.bias"])
        return hidden @ key_net["linear.2.weight"].T + key_net["linear.2.bias"]

    q2, k2, v2 = patch(n, k, k, {})
    assert q2 is n and torch.allclose(k2, k + by_hand(k) * 0.7, atol=1e-5)
    assert not torch.allclose(v2, k2)  # the value network is a different one
    _, k3, v3 = patch(n, n, n, {})  # a width the file does not cover passes through
    assert k3 is n and v3 is n


def test_hypernetwork_layer_norm_sequence_follows_comfyui() -> None:
    options = {"activation_func": "relu", "is_layer_norm": True}
    net = build_network(hypernetwork_module(8, [1.0, 2.0, 1.0], True, 0), options)
    # With layer norms the last Linear is not the last entry, so it is followed by the activation too.
    kinds = [type(m).__name__ for m in net]
    assert kinds == ["Linear", "ReLU", "LayerNorm", "Linear", "ReLU", "LayerNorm"]
    plain = build_network(
        hypernetwork_module(8, [1.0, 2.0, 1.0], False, 0), {"activation_func": "relu", "use_dropout": True}
    )
    assert [type(m).__name__ for m in plain] == ["Linear", "ReLU", "Linear"]  # no dropout at inference
    outputs = build_network(
        hypernetwork_module(8, [1.0, 2.0, 1.0], False, 0),
        {"activation_func": "swish", "activate_output": True},
    )
    assert [type(m).__name__ for m in outputs] == ["Linear", "Hardswish", "Linear", "Hardswish"]


def test_bad_hypernetwork_is_a_named_error(
    executor: Executor, sd_folders: Folders, hypernetworks: Path
) -> None:
    torch.save({"activation_func": "gelu-ish", TEXT_WIDTH: [{}, {}]}, str(hypernetworks / "odd.pt"))
    (hypernetworks / "junk.pt").write_bytes(b"not a pickle")
    for name, message in (("odd.pt", "activation 'gelu-ish'"), ("junk.pt", "not a readable hypernetwork")):
        checked = validate_prompt(executor.registry, with_hypernetwork(name, 1.0))
        result = executor.execute(checked.prompt, "bad", checked.outputs)
        assert (
            result.status == "error"
            and "HypernetworkLoader" in str(result.error)
            and message in str(result.error)
        )


def test_checkpoint_loader_applies_what_comfyui_reads_from_its_config(
    executor: Executor, sd_folders: Folders, tmp_path: Path
) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "my-model.yaml").write_text(
        "model:\n  params:\n    parameterization: v\n"
        "    cond_stage_config:\n      params:\n        layer: hidden\n        layer_idx: -2\n"
    )
    (configs / "notes.txt").write_text("not a config")
    sd_folders.models["configs"] = [configs]
    choices = executor.registry.get("CheckpointLoader").inputs[0].choices()  # type: ignore[union-attr, misc]
    # ComfyUI's shipped config names stay valid (workflows name them); the folder's .yaml files are added.
    assert "v1-inference.yaml" in choices and "my-model.yaml" in choices and "notes.txt" not in choices

    def with_config(name: str) -> np.ndarray:
        prompt = text_to_image(CKPT)
        prompt["4"] = {"class_type": "CheckpointLoader", "inputs": {"config_name": name, "ckpt_name": CKPT}}
        return image(sd_folders, run(executor, prompt))

    def simple(v_prediction: bool = False, clip_skip: bool = False) -> np.ndarray:
        prompt = text_to_image(CKPT)
        if v_prediction:
            prompt["10"] = {
                "class_type": "ModelSamplingDiscrete",
                "inputs": {"model": ["4", 0], "sampling": "v_prediction", "zsnr": False},
            }
            prompt["3"]["inputs"]["model"] = ["10", 0]
        if clip_skip:
            skip = {"clip": ["4", 1], "stop_at_clip_layer": -2}
            prompt["11"] = {"class_type": "CLIPSetLastLayer", "inputs": skip}
            prompt["6"]["inputs"]["clip"] = prompt["7"]["inputs"]["clip"] = ["11", 0]
        return image(sd_folders, run(executor, prompt))

    assert np.array_equal(with_config("v1-inference.yaml"), simple())
    assert np.array_equal(with_config("v1-inference_clip_skip_2.yaml"), simple(clip_skip=True))
    assert np.array_equal(with_config("v2-inference-v.yaml"), simple(v_prediction=True))
    assert np.array_equal(with_config("my-model.yaml"), simple(v_prediction=True, clip_skip=True))
    assert not np.array_equal(simple(clip_skip=True), simple())


def test_diffusers_loader_gives_the_single_file_image(
    executor: Executor, sd_folders: Folders, tmp_path: Path
) -> None:
    root = tmp_path / "diffusers"
    write_diffusers_folder(root / "tiny" / "sd1")  # the same seed-0 weights as tiny_sd1.safetensors
    (root / "not_a_model").mkdir()
    sd_folders.models["diffusers"] = [root]
    assert executor.registry.get("DiffusersLoader").inputs[0].choices() == ["tiny/sd1"]  # type: ignore[union-attr, misc]
    prompt = text_to_image(CKPT)
    prompt["4"] = {"class_type": "DiffusersLoader", "inputs": {"model_path": "tiny/sd1"}}
    from_folder = image(sd_folders, run(executor, prompt))
    assert np.array_equal(from_folder, image(sd_folders, run(executor, text_to_image(CKPT))))
