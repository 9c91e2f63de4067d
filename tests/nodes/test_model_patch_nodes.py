"""Model patch nodes (nodes/model_patches) on the tiny SD1 checkpoint: identities and effects."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.torch import load_file

from engine.executor import Executor
from engine.folders import Folders
from engine.models.save import save_single_file
from engine.models.tiny import build_tiny
from tests.nodes.sd_fixtures import text_to_image
from tests.nodes.test_sd_nodes import run

CKPT = "tiny_sd1.safetensors"


def patched(node: str, cfg: float = 7.0, **inputs: Any) -> dict[str, Any]:
    """text_to_image with KSampler's model taken from `node` applied to the checkpoint's MODEL."""
    prompt = text_to_image(CKPT, cfg=cfg)
    prompt["30"] = {"class_type": node, "inputs": {"model": ["4", 0], **inputs}}
    prompt["3"]["inputs"]["model"] = ["30", 0]
    return prompt


def latent(executor: Executor, folders: Folders, prompt: dict[str, Any]) -> np.ndarray:
    """The sampled latent, saved by SaveLatent in place of the decode (tiny VAEs hide differences)."""
    prompt.pop("8")
    prompt["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "Loom"}}
    result = run(executor, prompt)
    assert result.status == "success", result.error
    info = result.outputs["9"]["latents"][0]
    return load_file(str(folders.output / info["subfolder"] / info["filename"]))["latent_tensor"].numpy()


def close(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal up to float32 rounding of the tiny model's large (~100) latents."""
    return np.allclose(a, b, rtol=1e-5, atol=1e-3)


def differs(a: np.ndarray, b: np.ndarray) -> bool:
    return float(np.abs(a - b).max()) > 0.1


def test_rescale_cfg_at_zero_is_plain_cfg_and_otherwise_changes_the_image(
    executor: Executor, sd_folders: Folders
) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    # Same guidance computed through the v-prediction round trip: equal up to float rounding.
    zero = latent(executor, sd_folders, patched("RescaleCFG", multiplier=0.0))
    assert close(zero, plain)
    rescaled = latent(executor, sd_folders, patched("RescaleCFG", multiplier=1.0))
    assert differs(rescaled, plain)


def test_cfg_zero_star_changes_guided_sampling_but_not_cfg_one(
    executor: Executor, sd_folders: Folders
) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    assert differs(latent(executor, sd_folders, patched("CFGZeroStar")), plain)
    # At cfg 1 the uncond terms cancel: denoised + u*(a-1) + 1*u*(1-a) == denoised.
    plain_one = latent(executor, sd_folders, text_to_image(CKPT, cfg=1.0))
    assert close(latent(executor, sd_folders, patched("CFGZeroStar", cfg=1.0)), plain_one)


def masked(prompt: dict[str, Any], value: float) -> dict[str, Any]:
    """Sample from the empty latent under a noise mask: `value` on the left half, 0 on the right."""
    prompt["40"] = {"class_type": "SolidMask", "inputs": {"value": 0.0, "width": 64, "height": 64}}
    prompt["41"] = {"class_type": "SolidMask", "inputs": {"value": value, "width": 32, "height": 64}}
    prompt["42"] = {
        "class_type": "MaskComposite",
        "inputs": {"destination": ["40", 0], "source": ["41", 0], "x": 0, "y": 0, "operation": "add"},
    }
    prompt["43"] = {"class_type": "SetLatentNoiseMask", "inputs": {"samples": ["5", 0], "mask": ["42", 0]}}
    prompt["3"]["inputs"]["latent_image"] = ["43", 0]
    return prompt


def test_differential_diffusion_changes_only_the_soft_mask(executor: Executor, sd_folders: Folders) -> None:
    plain_full = latent(executor, sd_folders, masked(text_to_image(CKPT), 1.0))
    diff_full = latent(executor, sd_folders, masked(patched("DifferentialDiffusion"), 1.0))
    # Under a mask of 1 every step passes the threshold: the same as plain inpainting there.
    assert close(diff_full[..., :4], plain_full[..., :4])
    # Where the mask is 0 only the last step (at sigma_min, threshold 0) denoises, as in ComfyUI:
    # the empty latent gains no more than that last small step, while plain inpainting keeps it.
    assert np.abs(plain_full[..., 5:]).max() < 1e-3 and 0 < np.abs(diff_full[..., 5:]).max() < 1.0
    plain_soft = latent(executor, sd_folders, masked(text_to_image(CKPT), 0.5))
    diff_soft = latent(executor, sd_folders, masked(patched("DifferentialDiffusion", strength=1.0), 0.5))
    assert differs(diff_soft, plain_soft)
    assert differs(diff_soft[..., :4], plain_soft[..., :4])


def test_freeu_identity_factors_leave_sampling_unchanged(executor: Executor, sd_folders: Folders) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    ones = {"b1": 1.0, "b2": 1.0, "s1": 1.0, "s2": 1.0}
    for node in ("FreeU", "FreeU_V2"):
        # Scale 1 everywhere: the skip's spectrum goes through fft/ifft unchanged up to rounding.
        assert close(latent(executor, sd_folders, patched(node, **ones)), plain)


def test_freeu_factors_change_sampling(executor: Executor, sd_folders: Folders) -> None:
    # The tiny SD1 UNet has model_channels 32: its 64-channel decoder blocks take b2 and s2.
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    for node in ("FreeU", "FreeU_V2"):
        backbone = latent(executor, sd_folders, patched(node, b1=1.0, b2=1.5, s1=1.0, s2=1.0))
        skip = latent(executor, sd_folders, patched(node, b1=1.0, b2=1.0, s1=1.0, s2=0.2))
        assert differs(backbone, plain) and differs(skip, plain) and differs(backbone, skip)


def test_model_sampling_discrete_eps_is_the_unpatched_model(executor: Executor, sd_folders: Folders) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    same = latent(executor, sd_folders, patched("ModelSamplingDiscrete", sampling="eps", zsnr=False))
    assert np.array_equal(same, plain)
    others = [
        latent(executor, sd_folders, patched("ModelSamplingDiscrete", sampling=kind, zsnr=zsnr))
        for kind, zsnr in (("v_prediction", False), ("x0", False), ("lcm", False), ("eps", True))
    ]
    for i, got in enumerate(others):
        assert np.isfinite(got).all() and differs(got, plain)
        assert all(differs(got, other) for other in others[i + 1 :])


def test_zero_terminal_snr_table_by_hand() -> None:
    from engine.sampling.model_sampling import ModelSampling
    from nodes.model_patches.model_sampling_discrete import ZSNR_LAST_ALPHABAR, discrete_sampling

    base = ModelSampling("eps")
    zsnr = discrete_sampling(base, "eps", zsnr=True)
    # The first timestep keeps its signal; the last has alphabar pinned near zero.
    assert np.isclose(float(zsnr.sigmas[0]), float(base.sigmas[0]), rtol=1e-4)
    assert np.isclose(
        float(zsnr.sigmas[-1]), ((1 - ZSNR_LAST_ALPHABAR) / ZSNR_LAST_ALPHABAR) ** 0.5, rtol=1e-4
    )
    lcm = discrete_sampling(base, "lcm", zsnr=False)
    # 50 of the 1000 entries, every 20th ending at the last; timesteps map back onto the full range.
    assert len(lcm.sigmas) == 50 and float(lcm.sigmas[-1]) == float(base.sigmas[-1])
    assert int(lcm.timestep(lcm.sigmas[-1:])[0]) == 999 and int(lcm.timestep(lcm.sigmas[:1])[0]) == 19


@pytest.fixture
def second_sd1(sd_folders: Folders, tmp_path: Path) -> str:
    """Another tiny SD1 checkpoint with different random weights, in a checkpoints folder of this test
    only (the shared tiny models folder stays as other tests expect it)."""
    name = "tiny_sd1_other.safetensors"
    tiny = build_tiny("sd1", seed=1)
    folder = tmp_path / "more_checkpoints"
    folder.mkdir()
    save_single_file(
        folder / name, tiny.unet, tiny.vae, tiny.text_encoders, "sd1", None, tiny.prediction_type
    )
    sd_folders.models["checkpoints"] = [*sd_folders.models["checkpoints"], folder]
    return name


def merged(node: str, first: str, second: str | None, **inputs: Any) -> dict[str, Any]:
    """text_to_image sampling the merge of checkpoint `first` (node 4) with `second` (node 50)."""
    prompt = text_to_image(first)
    other = ["4", 0]
    if second is not None:
        prompt["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": second}}
        other = ["50", 0]
    prompt["30"] = {"class_type": node, "inputs": {"model1": ["4", 0], "model2": other, **inputs}}
    prompt["3"]["inputs"]["model"] = ["30", 0]
    return prompt


def test_model_merge_simple_ends_are_each_model_bit_for_bit(
    executor: Executor, sd_folders: Folders, second_sd1: str
) -> None:
    first = latent(executor, sd_folders, text_to_image(CKPT))
    # Sampled with CKPT's text encoder: only the UNet weights differ between the two runs.
    other_prompt = text_to_image(CKPT)
    other_prompt["50"] = {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": second_sd1}}
    other_prompt["3"]["inputs"]["model"] = ["50", 0]
    second = latent(executor, sd_folders, other_prompt)
    assert differs(first, second)
    assert np.array_equal(
        latent(executor, sd_folders, merged("ModelMergeSimple", CKPT, second_sd1, ratio=1.0)), first
    )
    assert np.array_equal(
        latent(executor, sd_folders, merged("ModelMergeSimple", CKPT, second_sd1, ratio=0.0)), second
    )
    half = latent(executor, sd_folders, merged("ModelMergeSimple", CKPT, second_sd1, ratio=0.5))
    assert differs(half, first) and differs(half, second)


def test_model_merge_subtract_of_itself_is_a_zero_delta(executor: Executor, sd_folders: Folders) -> None:
    plain = latent(executor, sd_folders, text_to_image(CKPT))
    zero = latent(executor, sd_folders, merged("ModelMergeSubtract", CKPT, None, multiplier=1.0))
    assert differs(zero, plain)
    # model + (model - model) == model exactly: the delta is all zeros.
    prompt = merged("ModelMergeSubtract", CKPT, None, multiplier=1.0)
    prompt["31"] = {"class_type": "ModelMergeAdd", "inputs": {"model1": ["4", 0], "model2": ["30", 0]}}
    prompt["3"]["inputs"]["model"] = ["31", 0]
    assert np.array_equal(latent(executor, sd_folders, prompt), plain)
    doubled = latent(executor, sd_folders, merged("ModelMergeAdd", CKPT, None))
    assert differs(doubled, plain)
