"""Chroma Radiance end to end on tiny stand-ins in ComfyUI's layout: detection (both final layers, the x0
variant), loading through UNETLoader, the template's graph with EmptyChromaRadianceLatentImage,
ChromaRadianceOptions and the pixel_space VAE, determinism, previews and errors."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from tests.conftest import Recorder
from tests.nodes.flow_fixtures_radiance import radiance_workflow, tiny_radiance_state, write_radiance_files
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def radiance_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("radiance_models")
    write_radiance_files(root, x0=True)
    write_radiance_files(root, x0=False)
    return root


def _use(folders: Folders, root: Path) -> Folders:
    folders.models = Folders.under(root.parent, models_base=root).models
    return folders


def _load(tmp_path: Path, state: dict[str, torch.Tensor]) -> Any:
    from engine.models.flow_families import load_diffusion_model

    path = tmp_path / "radiance.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return load_diffusion_model(path).model


@pytest.mark.parametrize("final", ["conv", "linear"])
@pytest.mark.parametrize("x0", [False, True])
def test_detection_of_both_heads_and_the_x0_variant(final: str, x0: bool) -> None:
    from engine.models import flow_families

    shapes = {k: tuple(v.shape) for k, v in tiny_radiance_state(final=final, x0=x0).items()}
    for prefix in ("", "model.diffusion_model."):
        found = flow_families.detect({prefix + k: v for k, v in shapes.items()})
        assert found is not None and (found.family, found.prefix) == ("chroma_radiance", prefix)
        assert found.variant == ("Chroma Radiance x0" if x0 else "Chroma Radiance")


def test_head_tiles_give_the_same_prediction_and_x0_is_turned_into_velocity(tmp_path: Path) -> None:
    """nerf_tile_size changes memory, not the result; the x0 file's network output is (x − x0) / σ of the
    plain file's (same weights otherwise), so both denoise to the same image."""
    plain = _load(tmp_path, tiny_radiance_state(3))
    x0 = _load(tmp_path, tiny_radiance_state(3, x0=True))
    x, sigma, context = torch.randn(2, 3, 40, 48), torch.tensor([0.6, 0.6]), torch.randn(2, 5, 32)
    with torch.no_grad():
        whole = plain.apply_model(x, sigma, c_crossattn=context)
        tiled = plain.apply_model(
            x,
            sigma,
            c_crossattn=context,
            transformer_options={"chroma_radiance_options": {"nerf_tile_size": 1}},
        )
        through_x0 = x0.apply_model(x, sigma, c_crossattn=context)
    assert whole.shape == x.shape and whole.std() > 0
    assert torch.allclose(whole, tiled, atol=1e-5)
    # plain: denoised = x − σ·out = x − σ·net; x0: denoised = x − σ·(x − net)/σ = net.
    net = (x - whole) / 0.6
    assert torch.allclose(through_x0, net, atol=1e-4)


def test_bad_radiance_options_are_named(tmp_path: Path) -> None:
    model = _load(tmp_path, tiny_radiance_state(3))
    x, sigma, context = torch.randn(1, 3, 32, 32), torch.tensor([0.5]), torch.randn(1, 5, 32)
    with pytest.raises(ValueError, match=r"unknown key.*nerf_tile"):
        model.apply_model(
            x, sigma, c_crossattn=context, transformer_options={"chroma_radiance_options": {"nerf_tile": 1}}
        )
    with pytest.raises(ValueError, match=r"invalid value.*nerf_tile_size"):
        model.apply_model(
            x,
            sigma,
            c_crossattn=context,
            transformer_options={"chroma_radiance_options": {"nerf_tile_size": 1.5}},
        )
    with pytest.raises(ValueError, match="CLIPLoader type chroma"):
        model.apply_model(x, sigma, c_crossattn=torch.randn(1, 5, 48))


def test_template_graph_repeats_and_options_change_nothing_but_memory(
    executor: Executor, loom_folders: Folders, radiance_models: Path
) -> None:
    folders = _use(loom_folders, radiance_models)
    recorder = Recorder()
    first = image_of(folders, run(executor, radiance_workflow(seed=5), recorder), "16")
    previews = recorder.of("preview_image")
    # One latent preview per step of the 3-channel pixel latent (32×32, drawn 8× larger).
    assert len(previews) == 3 and previews[0]["image"][:2] == b"\xff\xd8"
    assert Image.open(io.BytesIO(previews[-1]["image"])).size == (256, 256)
    executor.cache.clear()
    again = image_of(folders, run(executor, radiance_workflow(seed=5)), "16")
    other = image_of(folders, run(executor, radiance_workflow(seed=6)), "16")
    untiled = image_of(folders, run(executor, radiance_workflow(seed=5, tile=0)), "16")
    plain = image_of(
        folders, run(executor, radiance_workflow(seed=5, unet="chroma-radiance.safetensors")), "16"
    )
    assert first.shape == (32, 32, 3) and first.std() > 0
    assert np.array_equal(first, again) and not np.array_equal(first, other)
    assert np.abs(first.astype(int) - untiled.astype(int)).max() <= 1
    assert not np.array_equal(first, plain)


def test_empty_latent_pixel_vae_and_previews(executor: Executor) -> None:
    from engine.diffusion.latent_formats import latent_format
    from engine.diffusion.pixel_vae import PixelSpaceVAE

    prompt = {
        "1": {
            "class_type": "EmptyChromaRadianceLatentImage",
            "inputs": {"width": 48, "height": 32, "batch_size": 2},
        },
        "2": {"class_type": "VAELoader", "inputs": {"vae_name": "pixel_space"}},
        "3": {"class_type": "VAEDecode", "inputs": {"samples": ["1", 0], "vae": ["2", 0]}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}},
    }
    assert run(executor, prompt).status == "success"
    vae = PixelSpaceVAE.create()
    image = torch.rand(2, 24, 40, 3)
    latent = vae.encode(image)
    assert latent.shape == (2, 3, 24, 40) and torch.allclose(latent, image.movedim(-1, 1) * 2 - 1)
    assert torch.allclose(vae.decode(latent), image, atol=1e-6)
    assert torch.equal(vae.decode(torch.full((1, 3, 4, 4), 3.0)), torch.ones(1, 4, 4, 3))
    assert vae.latent_channels == 3 and vae.downscale_ratio == 1 and "pixel_space_vae" in vae.get_sd()
    fmt = latent_format("chroma_radiance", 1.0, {})
    jpeg = fmt.preview_jpeg(torch.zeros(1, 3, 64, 64) - 1.0)
    assert jpeg[:2] == b"\xff\xd8"


def test_errors_name_the_node_and_input(
    executor: Executor, loom_folders: Folders, radiance_models: Path
) -> None:
    _use(loom_folders, radiance_models)
    prompt = radiance_workflow()
    prompt["12"]["inputs"]["width"] = 8
    prompt["6"]["inputs"]["nerf_tile_size"] = -2
    checked = validate_prompt(executor.registry, prompt)
    assert not checked.ok
    assert "width" in str(checked.node_errors["12"]) and "nerf_tile_size" in str(checked.node_errors["6"])
    # T5 loaded as an SD text encoder: the loader node fails with a message naming the file.
    wrong = radiance_workflow()
    wrong["2"]["inputs"]["type"] = "stable_diffusion"
    result = executor.execute(validate_prompt(executor.registry, wrong).prompt, "p", {"16"})
    assert result.status == "error" and result.error["node_id"] == "2"
    assert "t5xxl_fp8_e4m3fn_scaled.safetensors" in result.error["exception_message"]


def test_fp8_weight_dtype_keeps_the_pixel_embedder_in_float32(
    executor: Executor, loom_folders: Folders, radiance_models: Path
) -> None:
    from engine.models.flow_families import load_diffusion_model

    folders = _use(loom_folders, radiance_models)
    model = load_diffusion_model(
        folders.model_path("diffusion_models", "chroma-radiance-x0.safetensors"), "fp8_e4m3fn"
    )
    head = model.model.diffusion_model.nerf_head
    assert head.embedder.embedder[0].weight.dtype == torch.float32
    assert head.blocks[0].param_generator.weight.dtype == torch.float8_e4m3fn
    prompt = radiance_workflow(seed=5)
    prompt["1"]["inputs"]["weight_dtype"] = "fp8_e4m3fn"
    pixels = image_of(folders, run(executor, prompt), "16")
    assert np.isfinite(pixels).all() and pixels.std() > 0


def test_a_checkpoint_with_t5_gives_a_chroma_clip(tmp_path: Path) -> None:
    """A Chroma Radiance checkpoint holding its T5 (as CheckpointSave writes one) loads a CLIP that encodes
    as Chroma's: the radiance model takes Chroma's text encoder."""
    from engine.diffusion import handles
    from tests.nodes.flow_fixtures import JOINT, t5_file_state, tiny_t5

    state = {f"model.diffusion_model.{k}": v for k, v in tiny_radiance_state(context=JOINT).items()}
    state |= {f"text_encoders.t5xxl.transformer.{k}": v for k, v in t5_file_state(tiny_t5(3)).items()}
    path = tmp_path / "radiance_with_t5.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    loaded = handles.load(path)
    assert loaded.clip is not None and loaded.clip.family == "chroma"
    cond = loaded.clip.encode_from_tokens(loaded.clip.tokenize("a red fox"))
    assert cond.shape[-1] == JOINT
