"""ModelPatchLoader and QwenImageDiffsynthControlnet on a tiny Qwen-Image: DiffSynth's block-wise
ControlNet in its file layout (written here), checked end to end through the executor and, for one model
call, against the same arithmetic built by hand with forward hooks on the transformer's blocks."""

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
from tests.nodes.flow_fixtures_new import qwen_image_workflow, write_qwen_image_files
from tests.nodes.model_patch_fixtures import diffsynth_weights, uso_projector_weights, zimage_fun_weights
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def qwen_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("diffsynth_models")
    write_qwen_image_files(root)
    (root / "model_patches").mkdir()
    save_file(diffsynth_weights(7), str(root / "model_patches" / "qwen_canny.safetensors"))
    save_file(
        diffsynth_weights(8, extra_channels=1), str(root / "model_patches" / "qwen_inpaint.safetensors")
    )
    save_file(diffsynth_weights(9, layers=1), str(root / "model_patches" / "qwen_short.safetensors"))
    save_file(zimage_fun_weights(10, "lite", width=64), str(root / "model_patches" / "zfun.safetensors"))
    save_file(uso_projector_weights(), str(root / "model_patches" / "uso.safetensors"))
    return root


@pytest.fixture
def folders(loom_folders: Folders, qwen_models: Path) -> Folders:
    loom_folders.models = Folders.under(qwen_models.parent, models_base=qwen_models).models
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[16:48, 20:28] = 255  # a bright bar: an edge map's worth of structure
    PILImage.fromarray(pixels).save(loom_folders.input / "edges.png")
    return loom_folders


def controlled(
    seed: int, patch: str = "qwen_canny.safetensors", strength: float = 1.0, mask: bool = False
) -> dict[str, Any]:
    """Qwen-Image's template graph with the control patch between the model and the sampler."""
    prompt = qwen_image_workflow(seed=seed)
    prompt["70"] = {"class_type": "ModelPatchLoader", "inputs": {"name": patch}}
    prompt["71"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    prompt["72"] = {
        "class_type": "QwenImageDiffsynthControlnet",
        "inputs": {
            "model": ["66", 0],
            "model_patch": ["70", 0],
            "vae": ["39", 0],
            "image": ["71", 0],
            "strength": strength,
        },
    }
    if mask:
        prompt["73"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
        prompt["72"]["inputs"]["mask"] = ["73", 0]
    prompt["3"]["inputs"]["model"] = ["72", 0]
    return prompt


def test_control_changes_the_image_strength_zero_does_not_and_seeds_repeat(
    executor: Executor, folders: Folders
) -> None:
    plain = image_of(folders, run(executor, qwen_image_workflow(seed=3)), "60").astype(int)
    first = image_of(folders, run(executor, controlled(3)), "60").astype(int)
    executor.cache.clear()
    again = image_of(folders, run(executor, controlled(3)), "60").astype(int)
    off = image_of(folders, run(executor, controlled(3, strength=0.0)), "60").astype(int)
    assert np.array_equal(first, again)
    assert np.abs(first - plain).mean() > 1.0
    assert np.array_equal(off, plain)


def test_inpaint_patch_takes_a_mask_channel(executor: Executor, folders: Folders) -> None:
    plain = image_of(folders, run(executor, qwen_image_workflow(seed=3)), "60").astype(int)
    masked = image_of(folders, run(executor, controlled(3, "qwen_inpaint.safetensors", mask=True)), "60")
    unmasked = image_of(folders, run(executor, controlled(3, "qwen_inpaint.safetensors")), "60")
    assert np.abs(masked.astype(int) - plain).mean() > 1.0
    assert not np.array_equal(masked, unmasked)  # the mask channel reaches img_in


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        (
            "qwen_short.safetensors",
            "input 'model_patch' 'qwen_short.safetensors' is 128 wide with 1 blocks",
        ),
        (
            "zfun.safetensors",
            "QwenImageDiffsynthControlnet: input 'model' must be a Z-Image model for the Z-Image Fun",
        ),
    ],
)
def test_unusable_patches_are_refused_by_name(
    executor: Executor, folders: Folders, patch: str, message: str
) -> None:
    result = run(executor, controlled(3, patch))
    assert result.status == "error" and message in result.error["exception_message"]


def test_one_model_call_matches_the_arithmetic_by_hand(folders: Folders) -> None:
    from nodes.image.io import LoadImage
    from nodes.loaders.checkpoints import VAELoader
    from nodes.loaders.model_patch import ModelPatchLoader, QwenImageDiffsynthControlnet
    from nodes.loaders.split import UNETLoader

    model = UNETLoader().run("qwen_image_bf16.safetensors", "default")
    vae = VAELoader().run("qwen_image_vae.safetensors")
    image = LoadImage().run("edges.png")[0]
    patch = ModelPatchLoader().run("qwen_canny.safetensors")
    patched = QwenImageDiffsynthControlnet().run(model, patch, vae, image, 0.7)

    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor([0.6])
    context = torch.randn(1, 5, model.unet.config.joint_attention_dim)
    options = patched.model_options["transformer_options"]
    with patched.applied() as m:
        got = m.apply_model(x, sigma, c_crossattn=context, transformer_options=options)

    w = {k: v.float() for k, v in diffsynth_weights(7).items()}
    latent = model.latent.process_in(vae.encode(image).float())  # 64 px: no resampling needed
    tokens = latent.reshape(1, 16, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, 64)
    control = tokens @ w["img_in.weight"].T + w["img_in.bias"]

    def rms(t: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return t * torch.rsqrt(t.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

    def hook(index: int) -> Any:
        def after(module: Any, args: Any, kwargs: Any, out: tuple[torch.Tensor, torch.Tensor]) -> Any:
            txt, img = out
            p = f"controlnet_blocks.{index}."
            h = rms(img, w[p + "x_rms.weight"]) + rms(control.to(img.dtype), w[p + "y_rms.weight"])
            h = torch.nn.functional.gelu(h @ w[p + "input_proj.weight"].T + w[p + "input_proj.bias"])
            return txt, img + 0.7 * (h @ w[p + "output_proj.weight"].T + w[p + "output_proj.bias"])

        return after

    blocks = model.unet.transformer_blocks
    handles = [b.register_forward_hook(hook(i), with_kwargs=True) for i, b in enumerate(blocks)]
    try:
        with model.applied() as m:
            expected = m.apply_model(x, sigma, c_crossattn=context)
    finally:
        for handle in handles:
            handle.remove()
    with model.applied() as m:
        plain = m.apply_model(x, sigma, c_crossattn=context)
    assert (got - plain).abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_uso_style_reference_validates_and_refuses_other_models(folders: Folders) -> None:
    from engine.graph import validate_prompt
    from nodes import builtin_registry
    from nodes.loaders.model_patch import ModelPatchLoader, USOStyleReference

    (folders.models["clip_vision"][0]).mkdir(parents=True, exist_ok=True)
    save_file(
        {"x": torch.zeros(1)},
        str(folders.models["clip_vision"][0] / "sigclip_vision_patch14_384.safetensors"),
    )
    prompt = qwen_image_workflow(seed=1)
    prompt["70"] = {"class_type": "ModelPatchLoader", "inputs": {"name": "uso.safetensors"}}
    prompt["71"] = {"class_type": "LoadImage", "inputs": {"image": "edges.png"}}
    prompt["74"] = {
        "class_type": "CLIPVisionLoader",
        "inputs": {"clip_name": "sigclip_vision_patch14_384.safetensors"},
    }
    prompt["75"] = {
        "class_type": "CLIPVisionEncode",
        "inputs": {"clip_vision": ["74", 0], "image": ["71", 0], "crop": "center"},
    }
    prompt["72"] = {
        "class_type": "USOStyleReference",
        "inputs": {"model": ["66", 0], "model_patch": ["70", 0], "clip_vision_output": ["75", 0]},
    }
    prompt["3"]["inputs"]["model"] = ["72", 0]
    assert validate_prompt(builtin_registry(), prompt).ok

    projector = ModelPatchLoader().run("uso.safetensors")
    assert projector.kind == "uso_style_projector"
    # USO runs on Flux (tests/nodes/test_flux_redux_uso.py); another model is refused by name.
    with pytest.raises(ValueError, match=r"USOStyleReference: input 'model' must be a Flux.1 model"):
        USOStyleReference().run(None, projector, None)
    canny = ModelPatchLoader().run("qwen_canny.safetensors")
    with pytest.raises(ValueError, match="USOStyleReference: input 'model_patch' must be USO's"):
        USOStyleReference().run(None, canny, None)
