"""The sampler's guidance honours CONDITIONING options: masks, mask bounds, percentage areas, strength,
timestep ranges and the extra input channels of inpainting / InstructPix2Pix models.

A stub UNet predicts, for each batch item, the noise eps = the first value of its context, so with an
eps model at sigma s and x = 0 every entry's denoised prediction is -s · (its context value).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion.diffusion_model import diffusion_model
from engine.diffusion.guider import CFGGuider
from engine.diffusion.latent_formats import LatentFormat
from engine.diffusion.model_patcher import ModelPatcher
from engine.sampling import ModelSampling


class StubConfig(dict):
    """A diffusers-style config: a dict whose keys read as attributes."""

    __getattr__ = dict.__getitem__


class StubUnet(torch.nn.Module):
    def __init__(self, in_channels: int = 4) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = StubConfig(addition_embed_type=None, in_channels=in_channels)
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timestep: Any, encoder_hidden_states: torch.Tensor, **_: Any) -> tuple:
        self.inputs.append(x)
        eps = encoder_hidden_states[:, 0, 0].reshape(-1, 1, 1, 1).expand(-1, 4, x.shape[2], x.shape[3])
        return (eps,)


def model(in_channels: int = 4) -> ModelPatcher:
    unet = StubUnet(in_channels)
    return ModelPatcher(diffusion_model(unet, ModelSampling("eps"), "sd1", LatentFormat(0.5)))


def guided_model(handle: ModelPatcher, positive: list, negative: list, cfg: float) -> Any:
    """The guided denoiser a sampler would call, through ComfyUI's CFGGuider."""
    guider = CFGGuider(handle)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)

    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        guider.prepare_conds(x.shape, x.device)
        return guider.predict_noise(x, sigma, handle.model_options)

    return denoise


def entry(value: float, **options: Any) -> list[Any]:
    return [torch.full((1, 1, 2), value), options]


def denoised(
    handle: ModelPatcher, positive: list, size: tuple[int, int] = (8, 8), sigma: float = 1.0
) -> torch.Tensor:
    x = torch.zeros(1, 4, *size)
    return guided_model(handle, positive, [], 1.0)(x, torch.tensor([sigma]))[0, 0]


def test_mask_blends_where_it_is_set() -> None:
    left = torch.zeros(1, 8, 8)
    left[:, :, :4] = 1.0
    out = denoised(model(), [entry(1.0, mask=left, mask_strength=0.5), entry(3.0)])
    # left: (-1 · 0.5 + -3 · 1) / 1.5; right: only the unmasked entry
    assert out[0, 0].item() == pytest.approx((-0.5 - 3.0) / 1.5)
    assert out[0, 7].item() == pytest.approx(-3.0)


def test_mask_is_resized_to_the_latent() -> None:
    top = torch.zeros(1, 64, 64)
    top[:, :32] = 1.0
    out = denoised(model(), [entry(2.0, mask=top), entry(4.0, mask=1 - top)])
    assert out[0, 0].item() == pytest.approx(-2.0) and out[7, 0].item() == pytest.approx(-4.0)


def test_mask_bounds_crop_the_prediction() -> None:
    handle = model()
    mask = torch.zeros(1, 16, 16)
    mask[:, 2:6, 3:5] = 1.0
    out = denoised(handle, [entry(1.0, mask=mask, set_area_to_bounds=True), entry(3.0)], size=(16, 16))
    # the masked entry runs on its bounding box grown to 8×8 from its corner (2, 3)
    assert sorted(tuple(x.shape[2:]) for x in handle.unet.inputs[0:2]) == [(8, 8), (16, 16)]
    assert out[3, 4].item() == pytest.approx(-2.0) and out[0, 0].item() == pytest.approx(-3.0)


def test_percentage_area_and_comfyui_feather() -> None:
    area = ("percentage", 0.5, 1.0, 0.5, 0.0)  # bottom half of an 8×8 latent: rows 4-7
    out = denoised(model(), [entry(1.0, area=area, strength=1.0), entry(3.0)])
    # the area's top edge is inside the image: it fades in over min(8, 4 // 4) = 1 row, at weight 1/1
    assert out[0, 0].item() == pytest.approx(-3.0)
    assert out[4, 0].item() == pytest.approx(-2.0) and out[7, 0].item() == pytest.approx(-2.0)


def test_feather_ramp_over_a_quarter_of_the_side() -> None:
    area = (16, 16, 16, 0)  # rows 16-31 of 32: a ramp of 4 rows, weights 1/4 .. 4/4
    out = denoised(model(), [entry(1.0, area=area, strength=2.0), entry(3.0)], size=(32, 8))
    weight = 2.0 * 1 / 4
    assert out[16, 0].item() == pytest.approx((-1.0 * weight - 3.0) / (weight + 1))
    assert out[20, 0].item() == pytest.approx((-2.0 - 3.0) / 3)


def test_timestep_range_switches_an_entry_on_and_off() -> None:
    handle = model()
    late = [entry(1.0, start_percent=0.5, end_percent=1.0), entry(3.0)]
    middle = float(handle.sampling.sigma(torch.tensor(999.0 * 0.5)))
    early = denoised(handle, late, sigma=middle * 2)  # before the halfway sigma: only the other entry
    assert early[0, 0].item() == pytest.approx(-3.0 * middle * 2)
    after = denoised(handle, late, sigma=middle / 2)
    assert after[0, 0].item() == pytest.approx(-2.0 * middle / 2)


def test_inpainting_model_gets_mask_and_masked_latent() -> None:
    handle = model(in_channels=9)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., :32, :] = 1.0
    image = torch.full((1, 4, 8, 8), 2.0)
    denoised(handle, [entry(1.0, concat_latent_image=image, concat_mask=mask)])
    x_in = handle.unet.inputs[0]
    assert x_in.shape[1] == 9
    assert x_in[0, 4, 0, 0].item() == 1.0 and x_in[0, 4, 7, 0].item() == 0.0  # mask resized to the latent
    assert torch.all(x_in[0, 5:] == 1.0)  # the latent scaled in: 2 · 0.5


def test_inpainting_model_without_concat_gets_a_grey_image_and_full_mask() -> None:
    handle = model(in_channels=9)
    denoised(handle, [entry(1.0)])
    x_in = handle.unet.inputs[0]
    assert torch.all(x_in[0, 4] == 1.0) and x_in[0, 5, 0, 0].item() == pytest.approx(0.8223)


def test_instruct_pix2pix_model_gets_the_image_latent_as_is() -> None:
    handle = model(in_channels=8)
    denoised(handle, [entry(1.0, concat_latent_image=torch.full((1, 4, 4, 4), 3.0))])
    x_in = handle.unet.inputs[0]
    assert x_in.shape == (1, 8, 8, 8) and torch.allclose(x_in[0, 4:], torch.full((4, 8, 8), 3.0))


def test_unknown_extra_channels_are_a_clear_error() -> None:
    with pytest.raises(ValueError, match="Loom knows 9-channel inpainting"):
        denoised(model(in_channels=5), [entry(1.0)])


def test_every_area_gets_an_opposite_one_as_in_comfyui() -> None:
    handle = model()
    area_a, area_b = (24, 24, 4, 4), (8, 8, 12, 12)  # B lies inside A
    positive = [entry(1.0, area=area_b), entry(3.0)]
    negative = [entry(5.0), entry(7.0, area=area_a)]
    x = torch.zeros(1, 4, 32, 32)
    out = guided_model(handle, positive, negative, 2.0)(x, torch.tensor([1.0]))[0, 0, 16, 16]
    # B's copy on the negative side predicts with the smallest negative entry covering B (7, area A);
    # A's copy on the positive side with the full positive entry (3). At (16, 16) every weight is 1:
    # cond = -(1 + 3 + 3) / 3, uncond = -(5 + 7 + 7) / 3, result = uncond + (cond - uncond) · 2
    cond, uncond = -7 / 3, -19 / 3
    assert out.item() == pytest.approx(uncond + (cond - uncond) * 2)
    # three UNet calls: the whole latent, area A (its entry and the copy), area B (likewise)
    assert sorted(x.shape[0] for x in handle.unet.inputs) == [2, 2, 2]
