"""comfy.supported_models(_base), comfy.model_detection, comfy.conds and the named-only comfy.ldm
classes, imported and used the way ComfyUI-Easy-Use does (tests/packs/model_config_pack)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine import comfy_compat
from engine.custom_nodes import load_pack
from engine.executor import Executor
from engine.folders import Folders
from engine.registry import NodeRegistry
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import image_of, run

PACK = Path(__file__).parent / "model_config_pack"
# ComfyUI 0.3.64's detect_unet_config for bench/make_comfy_sd15.py's checkpoint (read off ComfyUI).
COMFY_SD15_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "adm_in_channels": None, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [1, 1], "transformer_depth": [1, 0], "transformer_depth_output": [1, 1, 0, 0],
    "channel_mult": [1, 1], "transformer_depth_middle": 1, "use_linear_in_transformer": False,
    "context_dim": 768, "use_temporal_resblock": False, "use_temporal_attention": False,
}  # fmt: skip


@pytest.fixture
def comfy() -> Any:
    comfy_compat.install()
    return importlib.import_module


@pytest.fixture
def pack_executor(registry: NodeRegistry, sd_folders: Folders) -> Executor:
    status = load_pack(registry, PACK)
    assert status.status == "loaded", status.error
    assert status.nodes == ["ConfigSdVersion", "ConfigExtraCond"] and status.node_errors == {}
    return Executor(registry)


def loaded(comfy: Any, folders: Folders, family: str) -> Any:
    path = str(folders.model_path("checkpoints", f"tiny_{family}.safetensors"))
    return comfy("comfy.sd").load_checkpoint_guess_config(path)[0]


def test_loom_models_carry_comfy_model_configs(comfy: Any, sd_folders: Folders) -> None:
    supported = comfy("comfy.supported_models")
    base = comfy("comfy.supported_models_base").BASE
    sd1, sdxl = loaded(comfy, sd_folders, "sd1"), loaded(comfy, sd_folders, "sdxl")
    config = sd1.model.model_config
    assert isinstance(config, supported.SD15) and isinstance(config, base)
    assert not isinstance(config, (supported.SDXL, supported.SD20, supported.SVD_img2vid))
    assert isinstance(sdxl.model.model_config, supported.SDXL)
    assert config.latent_format is sd1.model.latent_format and config.latent_format.scale_factor == 0.18215
    assert config.unet_config["num_heads"] == 8 and config.unet_config["use_temporal_attention"] is False
    assert config.unet_config["transformer_depth_output"] == [
        d for d in config.unet_config["transformer_depth"][:: config.unet_config["num_res_blocks"][0]]
        for _ in range(config.unet_config["num_res_blocks"][0] + 1)
    ]  # fmt: skip
    assert sd1.clone().model.model_config is config  # clones share the model and its config


def test_comfy_matching_and_a_packs_own_config(comfy: Any) -> None:
    supported = comfy("comfy.supported_models")
    detection = comfy("comfy.model_detection")
    config = detection.model_config_from_unet_config(dict(COMFY_SD15_UNET))
    assert type(config) is supported.SD15 and config.unet_config["num_head_channels"] == -1
    sdxl_like = {**COMFY_SD15_UNET, "context_dim": 2048, "adm_in_channels": 2816,
                 "use_linear_in_transformer": True, "transformer_depth": [0, 0, 2, 2, 4, 4]}  # fmt: skip
    assert type(detection.model_config_from_unet_config(sdxl_like)) is supported.SSD1B
    sys.modules.pop("model_config_pack", None)
    pack = importlib.import_module("tests.packs.model_config_pack")
    saved = supported.models
    supported.models = [pack.PackConfig]  # swapped as Easy-Use's Kolors loader does
    try:
        assert detection.model_config_from_unet_config(dict(COMFY_SD15_UNET)) is None
        assert type(detection.model_config_from_unet_config({"image_model": "pack_dit"})) is pack.PackConfig
    finally:
        supported.models = saved
    with pytest.raises(NotImplementedError, match="does not build"):
        config.get_model({})
    assert config.process_unet_state_dict_for_saving({"a": 1}) == {"model.diffusion_model.a": 1}


def test_detection_answers_from_loom_detection(comfy: Any, sd_folders: Folders) -> None:
    from safetensors import safe_open

    detection = comfy("comfy.model_detection")
    path = sd_folders.model_path("checkpoints", "tiny_sd1.safetensors")
    with safe_open(str(path), "pt") as f:
        state = {k: torch.empty(f.get_slice(k).get_shape(), device="meta") for k in f.keys()}  # noqa: SIM118
    assert detection.unet_prefix_from_state_dict(state) == "model.diffusion_model."
    found = detection.detect_unet_config(state, "model.diffusion_model.")
    model = loaded(comfy, sd_folders, "sd1")
    assert found == {k: model.model.model_config.unet_config[k] for k in COMFY_SD15_UNET}
    assert detection.detect_unet_config({"x.weight": torch.empty(1)}, "model.diffusion_model.") is None
    assert detection.count_blocks(["in.0.a", "in.1.b", "in.3.c"], "in.{}.") == 2
    converted = detection.convert_config(
        {
            "num_res_blocks": 2,
            "channel_mult": [1, 2, 4],
            "attention_resolutions": [2, 4],
            "transformer_depth": 1,
        }
    )
    assert converted["transformer_depth"] == [0, 0, 1, 1, 1, 1]
    assert converted["transformer_depth_output"] == [0, 0, 0, 1, 1, 1, 1, 1, 1]
    assert converted["num_res_blocks"] == [2, 2, 2] and converted["transformer_depth_middle"] == 1


def test_conds_batch_and_join_as_comfy(comfy: Any) -> None:
    conds = comfy("comfy.conds")
    regular = conds.CONDRegular(torch.arange(3.0).reshape(1, 3))
    batched = regular.process_cond(batch_size=3)
    assert batched.cond.shape == (3, 3) and batched.size() == [3, 3]
    assert regular.can_concat(conds.CONDRegular(torch.zeros(1, 3)))
    assert not regular.can_concat(conds.CONDRegular(torch.zeros(1, 4)))
    short, long = conds.CONDCrossAttn(torch.ones(1, 77, 8)), conds.CONDCrossAttn(torch.zeros(1, 154, 8))
    assert short.can_concat(long) and not short.can_concat(conds.CONDCrossAttn(torch.zeros(1, 77 * 5, 8)))
    joined = short.concat([long])
    assert joined.shape == (2, 154, 8) and torch.equal(joined[0], torch.ones(154, 8))
    noise = conds.CONDNoiseShape(torch.arange(16.0).reshape(1, 1, 4, 4))
    cut = noise.process_cond(batch_size=2, area=(2, 3, 1, 0)).cond  # h, w, y, x
    assert cut.shape == (2, 1, 2, 3) and cut[0, 0, 0].tolist() == [4.0, 5.0, 6.0]
    constant = conds.CONDConstant(5)
    assert constant.can_concat(conds.CONDConstant(5)) and not constant.can_concat(conds.CONDConstant(6))
    listed = conds.CONDList([torch.zeros(1, 2), torch.ones(1, 3)]).process_cond(batch_size=2)
    assert [c.shape for c in listed.concat([listed])] == [(4, 2), (4, 3)]


def test_model_conds_reach_the_model_call(pack_executor: Executor, sd_folders: Folders) -> None:
    probe = comfy_compat.pack_classes["ConfigExtraCond"]
    probe.seen.clear()
    prompt = text_to_image("tiny_sd1.safetensors", steps=2)
    prompt["40"] = {"class_type": "ConfigExtraCond", "inputs": {"model": ["4", 0], "conditioning": ["6", 0]}}
    prompt["3"]["inputs"].update(model=["40", 0], positive=["40", 1])
    result = run(pack_executor, prompt)
    assert result.status == "success", (result.error or {}).get("exception_message")
    assert image_of(sd_folders, result).std() > 0
    # Batched to the latent's batch, on the positive prompt's call of each step (which runs apart from
    # the negative one, as an entry with its own model_conds always does).
    assert sorted(probe.seen, key=str) == [(1, 3), (1, 3), None, None]


def test_sd_version_node_and_named_only_classes(
    pack_executor: Executor, comfy: Any, sd_folders: Folders
) -> None:
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "tiny_sdxl.safetensors"}},
        "2": {"class_type": "ConfigSdVersion", "inputs": {"model": ["1", 0]}},
        "3": {"class_type": "PreviewAny", "inputs": {"source": ["2", 0]}},
    }
    result = run(pack_executor, prompt)
    assert result.status == "success", result.error
    assert result.outputs["3"]["text"] == ["sdxl"]
    openaimodel = comfy("comfy.ldm.modules.diffusionmodules.openaimodel")
    pack = sys.modules[comfy_compat.pack_classes["ConfigSdVersion"].__module__]
    with pytest.raises(NotImplementedError, match=r"openaimodel\.UNetModel"):
        pack.PackUNet(model_channels=320)
    with pytest.raises(NotImplementedError, match=r"autoencoder\.AutoencoderKL"):
        comfy("comfy.ldm.models.autoencoder").AutoencoderKL()
    model = loaded(comfy, sd_folders, "sd1")
    assert not isinstance(model.model.diffusion_model, (openaimodel.UNetModel, openaimodel.ResBlock))
    with pytest.raises(NotImplementedError, match=r"model_base\.PackSDXL\(model_config"):
        pack.PackSDXL(comfy("comfy.supported_models").SDXL({}))
    assert openaimodel.timestep_embedding(torch.tensor([0.0]), 4).tolist() == [[1.0, 1.0, 0.0, 0.0]]


def test_extras_helpers_and_noise(comfy: Any) -> None:
    compositing = comfy("comfy_extras.nodes_compositing")
    image, mask = torch.rand(2, 4, 6, 3), torch.zeros(1, 2, 3)
    mask[0, 0, 0] = 1.0
    (joined,) = compositing.JoinImageWithAlpha().execute(image, mask)
    assert joined.shape == (1, 4, 6, 4) and torch.equal(joined[..., :3], image[:1])
    assert joined[0, 0, 0, 3] == 0.0 and joined[0, 3, 5, 3] == 1.0  # alpha = 1 - mask, resized bilinearly
    embed = comfy("comfy_extras.nodes_stable3d").camera_embeddings(30.0, 90.0)
    assert embed.shape == (1, 1, 4)
    assert np.allclose(embed.flatten().tolist(), [-np.pi / 6, 1.0, 0.0, np.pi / 2], atol=1e-6)
    sampling = comfy("comfy.k_diffusion.sampling")
    x = torch.zeros(1, 4, 8, 8)
    first = sampling.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=3, cpu=True)(
        torch.tensor(5.0), torch.tensor(2.0)
    )
    again = sampling.BrownianTreeNoiseSampler(x, 0.1, 10.0, seed=3, cpu=True)(
        torch.tensor(5.0), torch.tensor(2.0)
    )
    assert torch.equal(first, again) and 0.5 < float(first.std()) < 1.5


def test_every_config_in_models_is_reachable_by_comfyuis_name(comfy: Any) -> None:
    """A pack tests `isinstance(model.model.model_config, comfy.supported_models.HiDream)`: each config of
    ComfyUI 0.3.64 that Loom's models carry is an attribute of the module, not only an entry of `models`."""
    supported = comfy("comfy.supported_models")
    detection = comfy("comfy.model_detection")
    for name in ("SD3", "Flux", "Chroma", "ChromaRadiance", "Lumina2", "HiDream", "QwenImage"):
        assert getattr(supported, name, None) in supported.models, name
    config = detection.model_config_from_unet_config({"image_model": "hidream"})
    assert type(config) is supported.HiDream and config.sampling_settings == {}
