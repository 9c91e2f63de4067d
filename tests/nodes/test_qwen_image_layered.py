"""Qwen-Image Layered on tiny stand-ins (tests/nodes/qwen_layered_fixtures.py): detection and loading
through UNETLoader, the 5-D latent through Loom's sampler, the RGBA VAE, and the template's Image to Layers
and Text to Layers graphs end to end (repeatable, following the input image), with clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.conftest import Recorder
from tests.nodes.harness import call
from tests.nodes.qwen_layered_fixtures import UNET, VAE, layered_workflow, write_layered_files
from tests.nodes.test_sd_nodes import run


@pytest.fixture(scope="module")
def layered_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("qwen_layered_models")
    return root, write_layered_files(root)


@pytest.fixture
def folders_with_models(loom_folders: Folders, layered_models: tuple[Path, dict[str, Any]]) -> Folders:
    from PIL import Image

    root = layered_models[0]
    loom_folders.models = Folders.under(root.parent, models_base=root).models
    Image.new("RGB", (64, 64), (230, 120, 20)).save(loom_folders.input / "fox.png")
    Image.new("RGB", (64, 64), (20, 40, 200)).save(loom_folders.input / "owl.png")
    return loom_folders


def _images(folders: Folders, result: Any, node: str = "9") -> list[np.ndarray]:
    from PIL import Image

    assert result.status == "success", "".join((result.error or {}).get("traceback", [])) + str(
        (result.error or {}).get("exception_message")
    )
    return [
        np.asarray(Image.open(folders.output / info["subfolder"] / info["filename"]))
        for info in result.outputs[node]["images"]
    ]


def test_layered_file_is_detected_and_built_with_its_extra_timestep_condition(
    layered_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.models.flow_families import load_diffusion_model

    patcher = load_diffusion_model(layered_models[0] / "diffusion_models" / UNET)
    model = patcher.model
    assert model.family == "qwen_image" and model.takes_frames
    assert model.default_reference_method == "negative_index"
    config = model.diffusion_model.config
    assert config.use_additional_t_cond and config.use_layer3d_rope
    reference = layered_models[1]["transformer"].state_dict()
    loaded = model.diffusion_model.state_dict()
    key = "time_text_embed.addition_t_embedding.weight"
    assert torch.equal(loaded[key].float(), reference[key].to(torch.bfloat16).float())


def test_rgba_vae_decodes_each_layer_to_an_rgba_image(layered_models: tuple[Path, dict[str, Any]]) -> None:
    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import open_state_dict

    state = dict(open_state_dict(layered_models[0] / "vae" / VAE)[0])
    vae = vae_from_state_dict(state, {}, VAE)
    assert vae.output_channels == 4
    latent = torch.randn(2, 16, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    images = vae.decode(latent)
    assert images.shape == (6, 32, 32, 4)
    single = vae.decode(latent[1:, :, 2])  # sample 1, layer 2 on its own
    assert torch.allclose(images[5:], single, atol=1e-5)
    # An RGB picture gets an opaque alpha on the way in.
    rgb = torch.rand(1, 32, 32, 3, generator=torch.Generator().manual_seed(1))
    rgba = torch.cat([rgb, torch.ones(1, 32, 32, 1)], dim=-1)
    assert torch.equal(vae.encode(rgb), vae.encode(rgba))


def test_image_to_layers_graph_runs_repeats_and_follows_the_image(
    executor: Executor, folders_with_models: Folders
) -> None:
    folders = folders_with_models
    recorder = Recorder()
    first = _images(folders, run(executor, layered_workflow(seed=3, image="fox.png"), recorder))
    again = _images(folders, run(executor, layered_workflow(seed=3, image="fox.png")))
    other_seed = _images(folders, run(executor, layered_workflow(seed=4, image="fox.png")))
    other_image = _images(folders, run(executor, layered_workflow(seed=3, image="owl.png")))
    assert len(first) == 2 and all(layer.shape == (64, 64, 4) for layer in first)
    assert first[0].std() > 0 and not np.array_equal(first[0], first[1])
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert not np.array_equal(first[0], other_seed[0])
    assert not np.array_equal(first[0], other_image[0])
    progress = [d["value"] for d in recorder.of("progress") if d["node"] == "3"]
    assert progress == [1, 2]


def test_text_to_layers_graph_runs(executor: Executor, folders_with_models: Folders) -> None:
    layers = _images(folders_with_models, run(executor, layered_workflow(seed=5, image=None, layers=3)))
    assert len(layers) == 3 and all(layer.shape == (64, 64, 4) for layer in layers)


def test_noise_mask_keeps_its_region_on_every_layer(
    executor: Executor, folders_with_models: Folders, layered_models: tuple[Path, dict[str, Any]]
) -> None:
    """The sampler contract on a 5-D latent: a noise mask (SetLatentNoiseMask) applies to the image and
    each layer alike; where it is 0 the latent stays as it was."""
    from engine.models.flow_families import load_clip, load_diffusion_model

    model = load_diffusion_model(layered_models[0] / "diffusion_models" / UNET)
    clip = load_clip(
        [layered_models[0] / "text_encoders" / "qwen_2.5_vl_7b_fp8_scaled.safetensors"], "qwen_image"
    )
    (positive,) = call(executor, "CLIPTextEncode", clip=clip, text="a fox")
    start = torch.full((1, 16, 3, 8, 8), 0.5)
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1.0
    (masked,) = call(executor, "SetLatentNoiseMask", samples={"samples": start}, mask=mask)
    (out,) = call(
        executor,
        "KSampler",
        model=model,
        seed=1,
        steps=2,
        cfg=1.0,
        sampler_name="euler",
        scheduler="simple",
        positive=positive,
        negative=positive,
        latent_image=masked,
        denoise=1.0,
    )
    samples = out["samples"]
    assert samples.shape == (1, 16, 3, 8, 8)
    assert torch.allclose(samples[..., :4], start[..., :4], atol=1e-5)
    assert not torch.allclose(samples[..., 4:], start[..., 4:])


def test_preview_of_a_layered_latent_shows_its_first_frame(
    layered_models: tuple[Path, dict[str, Any]],
) -> None:
    from engine.diffusion.taesd import preview_jpeg
    from engine.models.flow_families import load_diffusion_model

    fmt = load_diffusion_model(layered_models[0] / "diffusion_models" / UNET).model.latent_format
    latent = torch.randn(1, 16, 3, 8, 8)
    assert preview_jpeg(fmt, latent, "latent2rgb") == preview_jpeg(fmt, latent[:, :, 0], "latent2rgb")
