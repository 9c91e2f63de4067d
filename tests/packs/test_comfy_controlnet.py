"""comfy.controlnet as packs use it: load, build conditioning by hand, sample with nodes.common_ksampler."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
import torch

from engine import comfy_compat
from engine.folders import Folders
from tests.nodes.controlnet_fixtures import write_control_files
from tests.nodes.harness import call


@pytest.fixture
def comfy(sd_folders: Folders, tiny_models_dir: Path) -> Any:
    folder = tiny_models_dir / "controlnet"
    if not folder.is_dir():
        write_control_files(folder)
    comfy_compat.install()
    return importlib.import_module


def test_pack_built_conditioning_matches_the_apply_node(
    comfy: Any, sd_folders: Folders, executor: Any
) -> None:
    controlnet = comfy("comfy.controlnet")
    nodes = comfy("nodes")
    path = sd_folders.model_path("controlnet", "cn_ldm.safetensors")
    control_net = controlnet.load_controlnet(str(path))
    assert isinstance(control_net, controlnet.ControlNet) and isinstance(control_net, controlnet.ControlBase)
    adapter = controlnet.load_controlnet(str(sd_folders.model_path("controlnet", "t2i_light.safetensors")))
    assert isinstance(adapter, controlnet.T2IAdapter)
    assert controlnet.load_t2i_adapter({"something.else": torch.zeros(1)}) is None

    model, clip, _ = call(executor, "CheckpointLoaderSimple", ckpt_name="tiny_sd1.safetensors")
    (positive,) = call(executor, "CLIPTextEncode", clip=clip, text="a red circle")
    (negative,) = call(executor, "CLIPTextEncode", clip=clip, text="")
    hint = torch.rand(1, 64, 64, 3, generator=torch.Generator().manual_seed(1))
    # What Easy-Use's controlnet helper does: copy, set the hint, chain, put it on the entry.
    by_hand = []
    for cond, options in positive:
        c_net = control_net.copy().set_cond_hint(hint.movedim(-1, 1), 0.8, (0.0, 1.0))
        c_net.set_previous_controlnet(options.get("control"))
        by_hand.append([cond, {**options, "control": c_net, "control_apply_to_uncond": True}])
    latent = {"samples": torch.zeros(1, 4, 8, 8)}
    (sampled,) = nodes.common_ksampler(model, 5, 3, 4.0, "euler", "normal", by_hand, negative, latent)
    (node_made,) = nodes.ControlNetApply().apply_controlnet(positive, control_net, hint, 0.8)
    (expected,) = nodes.common_ksampler(model, 5, 3, 4.0, "euler", "normal", node_made, negative, latent)
    assert torch.equal(sampled["samples"], expected["samples"])
    (plain,) = nodes.common_ksampler(model, 5, 3, 4.0, "euler", "normal", positive, negative, latent)
    assert not torch.equal(sampled["samples"], plain["samples"])
    positive2, negative2 = nodes.ControlNetApplyAdvanced().apply_controlnet(
        positive, negative, control_net, hint, 0.8, 0.0, 1.0, None
    )
    assert positive2[0][1]["control"] is negative2[0][1]["control"]
