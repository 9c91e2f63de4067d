"""Lotus-D on tiny stand-ins: detection in each file layout, loading through UNETLoader, IMG_TO_IMG
sampling, LotusConditioning's data, and ComfyUI's Lotus depth graph end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.harness import call
from tests.nodes.lotus_fixtures import LAYOUT_FILES, lotus_depth_graph, write_lotus_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def lotus_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("lotus_models")
    return root, write_lotus_files(root)


@pytest.fixture
def lotus_folders(loom_folders: Folders, lotus_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(lotus_models[0].parent, models_base=lotus_models[0]).models
    return loom_folders


def _input_image(folders: Folders, name: str = "lotus_in.png", seed: int = 0) -> str:
    """A 32×32 picture: a bright box on a gradient, with a little noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 160, 32)[None, :, None].repeat(32, 0).repeat(3, 2)
    ramp[8:20, 10:24] = 235
    pixels = np.clip(ramp + rng.normal(0, 8, ramp.shape), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(folders.input / name)
    return name


def _shapes(path: Path) -> dict[str, tuple[int, ...]]:
    from engine.models.files import read_header

    return dict(read_header(path).shapes)


def test_detects_each_layout_and_leaves_other_unets_alone(
    lotus_models: tuple[Path, dict[str, Any]], tiny_models_dir: Path
) -> None:
    from engine.models import lotus

    folder = lotus_models[0] / "diffusion_models"
    expected = {
        "diffusers": ("diffusers", ""),
        "ldm": ("ldm", ""),
        "ldm_prefixed": ("ldm", "model.diffusion_model."),
    }
    for layout, name in LAYOUT_FILES.items():
        assert lotus.layout_of(_shapes(folder / name)) == expected[layout]
    for family in ("sd1", "sd2", "sdxl"):  # no 4-input class embedding: not Lotus
        assert (
            lotus.layout_of(_shapes(tiny_models_dir / "checkpoints" / f"tiny_{family}.safetensors")) is None
        )
    config = lotus.diffusers_config(_shapes(folder / LAYOUT_FILES["diffusers"]))
    original = lotus_models[1]["unet"].config
    for key in (
        "block_out_channels",
        "down_block_types",
        "up_block_types",
        "cross_attention_dim",
        "projection_class_embeddings_input_dim",
        "class_embed_type",
        "use_linear_projection",
    ):
        assert config[key] == (list(original[key]) if isinstance(original[key], tuple) else original[key]), (
            key
        )
    assert config["attention_head_dim"] == [1, 2]  # 64 channels a head


@pytest.mark.parametrize("layout", list(LAYOUT_FILES))
def test_unetloader_loads_each_layout_as_the_original_network(
    executor: Executor, lotus_folders: Folders, lotus_models: tuple[Path, dict[str, Any]], layout: str
) -> None:
    from engine.diffusion.diffusion_model import ModelType
    from engine.diffusion.lotus_model import Lotus, task_embedding

    (model,) = call(executor, "UNETLoader", unet_name=LAYOUT_FILES[layout], weight_dtype="default")
    assert isinstance(model.model, Lotus) and model.model.model_type == ModelType.IMG_TO_IMG
    original = lotus_models[1]["unet"]
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    context = torch.randn(2, 2, 1024, generator=torch.Generator().manual_seed(2))
    sigma = torch.tensor([999.0, 999.0])
    with torch.no_grad():
        denoised = model.model.apply_model(x, sigma, c_crossattn=context)
        # IMG_TO_IMG: the network sees x unscaled at the timestep nearest sigma (999) and predicts x0.
        y = task_embedding().expand(2, -1)
        expected = original(x, torch.tensor([999.0, 999.0]), context, class_labels=y, return_dict=False)[0]
    assert torch.allclose(denoised, expected, atol=1e-5)


def test_lotus_conditioning_is_the_shipped_null_prompt(executor: Executor) -> None:
    from safetensors.torch import load_file

    from engine.models.lotus import NULL_PROMPT_FILE, NULL_PROMPT_KEY

    ((cond, options),) = call(executor, "LotusConditioning")[0]
    stored = load_file(str(NULL_PROMPT_FILE))[NULL_PROMPT_KEY]
    assert cond.shape == (1, 2, 1024) and cond.dtype == torch.float32 and options == {}
    assert torch.equal(cond, stored)
    # The first and last numbers of ComfyUI's literal, and the one large activation of the first token.
    assert cond[0, 0, 0].item() == -0.3134765625 and cond[0, 1, -1].item() == 1.5009765625
    assert cond[0, 0].abs().max().item() > 10  # CLIP's start token has one huge channel


def _expected_depth(models: dict[str, Any], folders: Folders, name: str) -> np.ndarray:
    """The graph by hand: one x0 prediction at t=999 from the scaled image latent, decoded and inverted."""
    from engine.diffusion.lotus_model import task_embedding
    from engine.models.lotus import null_prompt

    pixels = torch.from_numpy(np.array(Image.open(folders.input / name).convert("RGB"))).float() / 255
    with torch.no_grad():
        latent = models["vae"].encode(pixels.permute(2, 0, 1)[None] * 2 - 1).latent_dist.mean * 0.18215
        x0 = models["unet"](
            latent, torch.tensor([999.0]), null_prompt(), class_labels=task_embedding(), return_dict=False
        )[0]
        image = (models["vae"].decode(x0 / 0.18215).sample[0].permute(1, 2, 0) + 1) / 2
    return np.asarray(((1 - image.clamp(0, 1)) * 255).round().to(torch.uint8))


@pytest.mark.parametrize("sigma", [999.0, 10000.0])
def test_lotus_depth_graph_runs_end_to_end_and_repeats(
    executor: Executor, lotus_folders: Folders, lotus_models: tuple[Path, dict[str, Any]], sigma: float
) -> None:
    name = _input_image(lotus_folders)
    first = image_of(lotus_folders, run(executor, lotus_depth_graph(name, sigma=sigma)))
    assert first.shape == (32, 32, 3) and first.std() > 0
    fresh = Executor(executor.registry)  # nothing cached: the whole graph runs again
    again = image_of(lotus_folders, run(fresh, lotus_depth_graph(name, sigma=sigma)))
    assert np.array_equal(first, again)
    by_hand = _expected_depth(lotus_models[1], lotus_folders, name)
    assert np.abs(first.astype(int) - by_hand.astype(int)).max() <= 1


def test_depth_follows_the_input_image(executor: Executor, lotus_folders: Folders) -> None:
    one = image_of(lotus_folders, run(executor, lotus_depth_graph(_input_image(lotus_folders, "a.png", 0))))
    other = image_of(lotus_folders, run(executor, lotus_depth_graph(_input_image(lotus_folders, "b.png", 5))))
    assert not np.array_equal(one, other)


def test_checkpoint_loader_names_lotus_and_unetloader(tmp_path: Path) -> None:
    from engine.models.checkpoint import load_checkpoint
    from engine.models.errors import UnsupportedModelError

    write_lotus_files(tmp_path)
    with pytest.raises(UnsupportedModelError, match="Lotus-D"):
        load_checkpoint(tmp_path / "diffusion_models" / LAYOUT_FILES["ldm_prefixed"])
