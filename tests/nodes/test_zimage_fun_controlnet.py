"""alibaba-pai's Z-Image Fun ControlNet through ModelPatchLoader, QwenImageDiffsynthControlnet (as the
template drives it) and ZImageFunControlnet, on a tiny Z-Image (64 wide, 4 layers, 2 refiner layers) with
control files in the released key layouts (1.0, 2.0, 2.1, lite) written here; end to end through the
executor, and one model call against the control blocks run by hand (forward hooks on the main layers)."""

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
from tests.nodes.flow_fixtures import _save
from tests.nodes.flow_fixtures_new import (
    tiny_zimage_transformer,
    write_zimage_files,
    zimage_to_comfy,
    zimage_workflow,
)
from tests.nodes.model_patch_fixtures import zimage_fun_marker, zimage_fun_weights
from tests.nodes.test_sd_nodes import image_of, run

SMALL = "z_image_small.safetensors"


@pytest.fixture(scope="module")
def fun_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("zimage_fun_models")
    write_zimage_files(root)
    small = tiny_zimage_transformer(31, cap_dim=32, dim=64, layers=4, refiner_layers=2)
    _save(root / "diffusion_models" / SMALL, zimage_to_comfy(small.state_dict()), None)
    patches = root / "model_patches"
    patches.mkdir()
    for seed, version in enumerate(("1.0", "2.0", "2.1", "lite")):
        save_file(
            zimage_fun_weights(40 + seed, version, width=64), str(patches / f"fun_{version}.safetensors")
        )
    save_file(zimage_fun_marker(), str(patches / "fun_marker.safetensors"))
    return root


@pytest.fixture
def folders(loom_folders: Folders, fun_models: Path) -> Folders:
    loom_folders.models = Folders.under(fun_models.parent, models_base=fun_models).models
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[12:36, 20:28] = 255  # a bright bar: an edge map's worth of structure
    PILImage.fromarray(pixels).save(loom_folders.input / "edges.png")
    PILImage.fromarray(np.full((48, 64, 3), 90, dtype=np.uint8)).save(loom_folders.input / "photo.png")
    return loom_folders


def controlled(
    seed: int,
    patch: str = "fun_1.0.safetensors",
    strength: float = 1.0,
    unet: str = SMALL,
    node: str = "QwenImageDiffsynthControlnet",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The front end's Z-Image graph with the control between the model and ModelSamplingAuraFlow."""
    prompt = zimage_workflow(seed=seed, unet=unet, steps=2)
    prompt["70"] = {"class_type": "ModelPatchLoader", "inputs": {"name": patch}}
    prompt["71"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    prompt["72"] = {
        "class_type": node,
        "inputs": {
            "model": ["1", 0],
            "model_patch": ["70", 0],
            "vae": ["3", 0],
            "image": ["71", 0],
            "strength": strength,
            **(extra or {}),
        },
    }
    if prompt["72"]["inputs"]["image"] is None:
        del prompt["72"]["inputs"]["image"]
    prompt["4"]["inputs"]["model"] = ["72", 0]
    return prompt


@pytest.mark.parametrize(
    ("version", "layers", "channels", "refiner"),
    [
        ("1.0", 6, 16, "plain"),
        ("2.0", 15, 33, "broken"),
        ("2.1", 15, 33, "control"),
        ("lite", 3, 33, "control"),
    ],
)
def test_released_layouts_are_recognised(
    folders: Folders, version: str, layers: int, channels: int, refiner: str
) -> None:
    from nodes.loaders.model_patch import ModelPatchLoader

    patch = ModelPatchLoader().run(f"fun_{version}.safetensors")
    assert patch.kind == "zimage_fun_controlnet"
    layout = patch.layout
    assert (layout.layers, layout.in_channels, layout.refiner, layout.width) == (
        layers,
        channels,
        refiner,
        64,
    )
    assert layout.every == round(30 / layers)


@pytest.mark.parametrize("version", ["1.0", "2.0", "2.1", "lite"])
def test_control_changes_the_image_strength_zero_does_not_and_seeds_repeat(
    executor: Executor, folders: Folders, version: str
) -> None:
    patch = f"fun_{version}.safetensors"
    plain = image_of(folders, run(executor, zimage_workflow(seed=3, unet=SMALL, steps=2)), "10").astype(int)
    first = image_of(folders, run(executor, controlled(3, patch)), "10").astype(int)
    executor.cache.clear()
    again = image_of(folders, run(executor, controlled(3, patch)), "10").astype(int)
    off = image_of(folders, run(executor, controlled(3, patch, strength=0.0)), "10").astype(int)
    assert np.array_equal(first, again)
    assert np.abs(first - plain).mean() > 1.0
    assert np.array_equal(off, plain)


def test_inpaint_image_and_mask_reach_the_control(executor: Executor, folders: Folders) -> None:
    def with_inputs(**inputs: Any) -> np.ndarray:
        prompt = controlled(5, "fun_2.1.safetensors", node="ZImageFunControlnet", extra=inputs)
        prompt["73"] = {"class_type": "LoadImage", "inputs": {"image": "photo.png"}}
        prompt["74"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 48}}
        return image_of(folders, run(executor, prompt), "10").astype(int)

    control_only = with_inputs()
    inpaint = with_inputs(inpaint_image=["73", 0])
    masked = with_inputs(inpaint_image=["73", 0], mask=["74", 0])
    inpaint_only = with_inputs(image=None, inpaint_image=["73", 0], mask=["74", 0])
    assert not np.array_equal(control_only, inpaint)
    assert not np.array_equal(inpaint, masked)
    assert not np.array_equal(masked, inpaint_only)  # without a control image: the encoded grey image


@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (
            lambda: controlled(3, unet="z_image_turbo_bf16.safetensors"),
            "QwenImageDiffsynthControlnet: input 'model_patch' 'fun_1.0.safetensors' is 64 wide with "
            "32-channel heads, but the model is 256 wide with 128-channel heads",
        ),
        (
            lambda: controlled(3, "fun_marker.safetensors"),
            "ModelPatchLoader: name 'fun_marker.safetensors': fun_marker.safetensors: a Z-Image Fun "
            "ControlNet needs",
        ),
    ],
)
def test_mismatched_or_incomplete_patches_are_refused_by_name(
    executor: Executor, folders: Folders, prompt: Any, message: str
) -> None:
    result = run(executor, prompt())
    assert result.status == "error" and message in result.error["exception_message"]


def test_refused_on_other_models_and_without_a_control_image(folders: Folders) -> None:
    from nodes.loaders.model_patch import ModelPatchLoader
    from nodes.loaders.model_patch_zimage import ZImageFunControlnet
    from nodes.loaders.split import UNETLoader

    patch = ModelPatchLoader().run("fun_1.0.safetensors")
    model = UNETLoader().run(SMALL, "default")
    with pytest.raises(ValueError, match="ZImageFunControlnet: input 'vae' must be Z-Image's VAE"):
        ZImageFunControlnet().run(model, patch, object(), 1.0, torch.zeros(1, 8, 8, 3))
    with pytest.raises(ValueError, match="ZImageFunControlnet: input 'model' must be a Z-Image model"):
        ZImageFunControlnet().run(_Other(), patch, None, 1.0, torch.zeros(1, 8, 8, 3))
    vae = _Vae16()
    with pytest.raises(ValueError, match="ZImageFunControlnet: input 'image' is required for"):
        ZImageFunControlnet().run(model, patch, vae, 1.0, None, torch.zeros(1, 8, 8, 3))


class _Other:
    family = "flux"


class _Vae16:
    latent_channels = 16


def test_one_model_call_matches_the_control_blocks_run_by_hand(folders: Folders) -> None:
    """2.1 on the 4-layer model: refiner hints after both refiner layers, control layers 0 and 1 after main
    layers 0 and 2 (every round(30 / 15) = 2), each hint × strength on the image tokens only."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    from engine.diffusion.latent_formats_flow import Flux
    from engine.diffusion.zimage_fun_control import control_tokens, run_control_block
    from nodes.image.io import LoadImage
    from nodes.loaders.checkpoints import VAELoader
    from nodes.loaders.model_patch import ModelPatchLoader, QwenImageDiffsynthControlnet
    from nodes.loaders.split import UNETLoader

    model = UNETLoader().run(SMALL, "default")
    vae = VAELoader().run("ae.safetensors")
    image = LoadImage().run("edges.png")[0]
    patch = ModelPatchLoader().run("fun_2.1.safetensors")
    patched = QwenImageDiffsynthControlnet().run(model, patch, vae, image, 0.8)

    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 6, 8), torch.tensor([0.6])
    context = torch.randn(1, 7, 32)
    with patched.applied() as m:
        got = m.apply_model(
            x, sigma, c_crossattn=context, transformer_options=patched.model_options["transformer_options"]
        )

    net = ZImageControlNetModel(
        control_layers_places=list(range(15)),
        control_refiner_layers_places=[0, 1],
        control_in_dim=33,
        add_control_noise_refiner="control_noise_refiner",
        dim=64,
        n_heads=2,
        n_kv_heads=2,
    )
    net.load_state_dict(zimage_fun_weights(42, "2.1", width=64))
    encoded = [
        Flux().process_in(vae.encode(pixels).float())
        for pixels in (image[..., :3], torch.full_like(image[..., :3], 0.5))
    ]
    latent = torch.cat([encoded[0], torch.zeros_like(encoded[0][:, :1]), encoded[1]], dim=1)
    control = net.control_all_x_embedder["2-1"](control_tokens(latent))
    count = control.shape[1]
    state: dict[str, Any] = {"stream": control}

    def refiner_hook(index: int) -> Any:
        def after(module: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
            if index == 0:
                state["refiner_input"] = args[0]
            hint, state["stream"] = run_control_block(
                net.control_noise_refiner[index],
                state["stream"],
                state["refiner_input"][:, :count],
                args[2][:, :count],
                args[3],
            )
            return torch.cat([out[:, :count] + 0.8 * hint, out[:, count:]], dim=1)

        return after

    def layer_hook(index: int) -> Any:
        def after(module: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
            if index == 0:
                state["layer_input"] = args[0][:, :count]
            if index % 2:
                return out
            hint, state["stream"] = run_control_block(
                net.control_layers[index // 2],
                state["stream"],
                state["layer_input"],
                args[2][:, :count],
                args[3],
            )
            return torch.cat([out[:, :count] + 0.8 * hint, out[:, count:]], dim=1)

        return after

    transformer = model.unet
    handles = [b.register_forward_hook(refiner_hook(i)) for i, b in enumerate(transformer.noise_refiner)]
    handles += [b.register_forward_hook(layer_hook(i)) for i, b in enumerate(transformer.layers)]
    try:
        with torch.no_grad(), model.applied() as m:
            expected = m.apply_model(x, sigma, c_crossattn=context)
    finally:
        for handle in handles:
            handle.remove()
    with model.applied() as m:
        plain = m.apply_model(x, sigma, c_crossattn=context)
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
