"""unCLIPCheckpointLoader, unCLIPConditioning (SD2.1 unCLIP and SDXL revision) and
ImageOnlyCheckpointLoader on tiny random-weight checkpoints in the real layouts."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from engine.diffusion.unclip import encode_unclip_conds, timestep_embedding, unclip_adm
from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.ui_workflow import ui_to_api
from tests.nodes.harness import call
from tests.nodes.vision_fixtures import hf_layout, tiny_vision, write, write_unclip_checkpoint
from tests.nodes.vision_workflows import revision_zero_positive, unclip_example

SDXL_POOLED = 32  # the tiny SDXL's pooled width (engine.models.tiny.PROJECTION_DIM)


@pytest.fixture(scope="module")
def unclip_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_unclip_checkpoint(
        tmp_path_factory.mktemp("unclip") / "tiny_unclip.safetensors", tiny_vision(1)
    )


@pytest.fixture
def unclip_folders(sd_folders: Folders, unclip_file: Path, tmp_path: Path) -> Folders:
    checkpoints = tmp_path / "unclip_checkpoints"
    checkpoints.mkdir()
    os.link(unclip_file, checkpoints / unclip_file.name)  # a symlink would leave the folder
    sd_folders.models["checkpoints"] = [*sd_folders.models["checkpoints"], checkpoints]
    write(
        sd_folders.models["clip_vision"][0] / "clip_vision_g.safetensors",
        hf_layout(tiny_vision(2, SDXL_POOLED)),
    )
    PILImage.new("RGB", (40, 32), (200, 120, 30)).save(sd_folders.input / "mountains.png")
    PILImage.new("RGB", (32, 40), (20, 60, 220)).save(sd_folders.input / "sunset.png")
    return sd_folders


def _sample(executor: Executor, model: Any, positive: Any, negative: Any, seed: int = 5) -> torch.Tensor:
    (latent,) = call(executor, "EmptyLatentImage", width=64, height=64, batch_size=1)
    (out,) = call(
        executor, "KSampler", model=model, seed=seed, steps=2, cfg=4.0, sampler_name="euler",
        scheduler="normal", positive=positive, negative=negative, latent_image=latent, denoise=1.0,
    )  # fmt: skip
    return out["samples"]


def test_unclip_checkpoint_loads_its_unet_and_vision_encoder(
    executor: Executor, unclip_folders: Folders
) -> None:
    model, clip, vae, vision = call(executor, "unCLIPCheckpointLoader", ckpt_name="tiny_unclip.safetensors")
    assert type(model.model).__name__ == "SD21UNCLIP" and model.model.adm_channels == 32
    assert model.unet.config.class_embed_type == "projection" and clip is not None and vae is not None
    assert model.model.model_sampling.prediction_type == "v_prediction"
    # The embedded open_clip-layout encoder encodes as the same weights in transformers' layout.
    image = torch.rand(1, 28, 28, 3, generator=torch.Generator().manual_seed(0))
    reference = _vision_from(tiny_vision(1)).encode_image(image)
    (encoded,) = call(executor, "CLIPVisionEncode", clip_vision=vision, image=image, crop="center")
    torch.testing.assert_close(encoded.image_embeds, reference.image_embeds)


def _vision_from(model: Any) -> Any:
    from engine.diffusion.clip_vision import clip_vision_from_state

    return clip_vision_from_state(hf_layout(model))


def test_unclip_conditioning_changes_the_unet_output_and_strength_zero_is_a_noop(
    executor: Executor, unclip_folders: Folders
) -> None:
    model, clip, _, vision = call(executor, "unCLIPCheckpointLoader", ckpt_name="tiny_unclip.safetensors")
    (positive,) = call(executor, "CLIPTextEncode", text="a red circle", clip=clip)
    (negative,) = call(executor, "CLIPTextEncode", text="", clip=clip)
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 32, 32, 3), crop="center"
    )
    plain = _sample(executor, model, positive, negative)
    (off,) = call(executor, "unCLIPConditioning", conditioning=positive, clip_vision_output=encoded,
                  strength=0.0, noise_augmentation=0.0)  # fmt: skip
    assert off is positive
    torch.testing.assert_close(_sample(executor, model, off, negative), plain)
    (on,) = call(executor, "unCLIPConditioning", conditioning=positive, clip_vision_output=encoded,
                 strength=1.0, noise_augmentation=0.1)  # fmt: skip
    assert on[0][1]["unclip_conditioning"][0]["noise_augmentation"] == 0.1
    guided = _sample(executor, model, on, negative)
    assert (guided - plain).abs().max() > 1e-3
    torch.testing.assert_close(
        _sample(executor, model, on, negative), guided
    )  # the noise comes from the seed


def _schedule() -> tuple[torch.Tensor, torch.Tensor]:
    """An independent source of the augmentor's schedule: diffusers' DDPM squaredcos_cap_v2 betas."""
    from diffusers import DDPMScheduler

    alphas = DDPMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2").alphas_cumprod
    return alphas.sqrt(), (1 - alphas).sqrt()


class _Encoded:
    def __init__(self, embeds: torch.Tensor) -> None:
        self.image_embeds = embeds


def test_adm_is_the_noised_embedding_and_level_embedding_and_several_are_merged() -> None:
    from diffusers.models.embeddings import get_timestep_embedding

    from engine.diffusion.unclip import CLIPEmbeddingNoiseAugmentation

    augmentor = CLIPEmbeddingNoiseAugmentation(8)
    signal, noise_scale = _schedule()
    embed = torch.randn(1, 8)
    adm = unclip_adm([{"clip_vision_output": _Encoded(embed), "strength": 0.5, "noise_augmentation": 0.3}],
                     augmentor, "cpu", seed=7)  # fmt: skip
    level = round(999 * 0.3)
    noise = torch.randn(1, 8, generator=torch.manual_seed(7))
    noised = signal[level] * embed + noise_scale[level] * noise
    level_emb = get_timestep_embedding(torch.tensor([level]), 8, flip_sin_to_cos=True, downscale_freq_shift=0)
    torch.testing.assert_close(adm, torch.cat([noised, level_emb], dim=1) * 0.5, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(timestep_embedding(torch.tensor([level]), 8), level_emb)
    # Two images: each noised and weighted, summed, and the sum noised again at the merge level.
    two = [{"clip_vision_output": _Encoded(torch.randn(2, 8)), "strength": 1.0, "noise_augmentation": 0.0}]
    merged = unclip_adm(two, augmentor, "cpu", merge=0.05, seed=3)
    embeds = two[0]["clip_vision_output"].image_embeds
    parts = [
        unclip_adm([{**two[0], "clip_vision_output": _Encoded(e[None])}], augmentor, "cpu", seed=3)
        for e in embeds
    ]
    summed = parts[0] + parts[1]
    level = round(999 * 0.05)
    again = signal[level] * summed[:, :8] + noise_scale[level] * torch.randn(
        1, 8, generator=torch.manual_seed(3)
    )
    torch.testing.assert_close(merged[:, :8], again, atol=1e-5, rtol=1e-4)


def test_revision_puts_the_image_embedding_on_sdxls_pooled_input(
    executor: Executor, unclip_folders: Folders
) -> None:
    model, clip, _ = call(executor, "CheckpointLoaderSimple", ckpt_name="tiny_sdxl.safetensors")
    (vision,) = call(executor, "CLIPVisionLoader", clip_name="clip_vision_g.safetensors")
    (encoded,) = call(
        executor, "CLIPVisionEncode", clip_vision=vision, image=torch.rand(1, 28, 28, 3), crop="center"
    )
    (text,) = call(executor, "CLIPTextEncode", text="anime", clip=clip)
    (negative,) = call(executor, "CLIPTextEncode", text="", clip=clip)
    (zero,) = call(executor, "ConditioningZeroOut", conditioning=text)
    (revision,) = call(executor, "unCLIPConditioning", conditioning=zero, clip_vision_output=encoded,
                       strength=0.75, noise_augmentation=0.0)  # fmt: skip
    entry = {"cross_attn": revision[0][0], **revision[0][1]}
    encode_unclip_conds(model.model, [entry], seed=11)
    signal, noise_scale = _schedule()
    noise = torch.randn(1, SDXL_POOLED, generator=torch.manual_seed(1))
    expected = (signal[0] * encoded.image_embeds + noise_scale[0] * noise) * 0.75
    torch.testing.assert_close(entry["pooled_output"], expected, atol=1e-5, rtol=1e-4)
    assert (
        _sample(executor, model, revision, negative) - _sample(executor, model, zero, negative)
    ).abs().max() > 1e-4


def _run_ui(executor: Executor, folders: Folders, workflow: dict[str, Any], name: str) -> np.ndarray:
    prompt = ui_to_api(json.loads(json.dumps(workflow)), executor.registry)
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, name, checked.outputs)
    assert result.status == "success", result.error
    saved = next(iter(result.outputs.values()))["images"][0]["filename"]
    return np.asarray(PILImage.open(folders.output / saved))


def test_unclip_example_workflow_converts_validates_and_runs(
    executor: Executor, unclip_folders: Folders
) -> None:
    """ComfyUI_examples' unclip_example (and its two-image form) on the tiny unCLIP checkpoint."""
    for images in (1, 2):
        pixels = _run_ui(
            executor, unclip_folders, unclip_example("tiny_unclip.safetensors", images), "unclip"
        )
        assert pixels.shape == (16, 16, 3)  # the tiny VAE scales by 2


def test_sdxl_revision_workflow_converts_validates_and_runs(
    executor: Executor, unclip_folders: Folders
) -> None:
    """ComfyUI_examples' sdxl_revision_zero_positive on the tiny SDXL and a CLIP-G-layout stand-in."""
    workflow = revision_zero_positive("tiny_sdxl.safetensors", "clip_vision_g.safetensors")
    assert _run_ui(executor, unclip_folders, workflow, "revision").shape == (16, 16, 3)


def test_image_only_loader_loads_unclip_and_names_an_svd_file(
    executor: Executor, unclip_folders: Folders
) -> None:
    model, vision, vae = call(executor, "ImageOnlyCheckpointLoader", ckpt_name="tiny_unclip.safetensors")
    assert type(model.model).__name__ == "SD21UNCLIP" and vision.image_size == 28 and vae is not None
    folder = unclip_folders.models["checkpoints"][0]
    svd = {
        "model.diffusion_model.input_blocks.1.0.time_stack.in_layers.0.weight": torch.zeros(4),
        "conditioner.embedders.0.open_clip.model.visual.conv1.weight": torch.zeros(4, 3, 14, 14),
    }
    write(folder / "svd_like.safetensors", svd)
    for node, extra in (("ImageOnlyCheckpointLoader", {}), ("unCLIPCheckpointLoader", {})):
        prompt = {"1": {"class_type": node, "inputs": {"ckpt_name": "svd_like.safetensors", **extra}}}
        from tests.nodes.vision_fixtures import capture

        checked = validate_prompt(executor.registry, prompt | capture(executor, "1"))
        assert checked.ok, checked.node_errors
        result = executor.execute(checked.prompt, "svd", checked.outputs)
        assert result.status == "error" and node in str(result.error) and "ckpt_name" in str(result.error)
        if node == "ImageOnlyCheckpointLoader":
            assert "Stable Video Diffusion" in str(result.error)
    (model2, _, _) = call(executor, "ImageOnlyCheckpointLoader", ckpt_name="tiny_unclip.safetensors")
    assert model2 is model or model2.model is model.model
