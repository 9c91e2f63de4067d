"""An empty latent made for another family (EmptyLatentImage: 4 channels at 1/8 of the image) takes the
sampled model's channels and its scale: half the size for the families whose latents are 1/16 of the image
(Flux.2, Flux 3, Qwen-Image 2.1), the image's size for Chroma Radiance's pixel latents, as newer ComfyUI's
fix_empty_latent_channels does."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from engine.diffusion.ksampler import fix_empty_latent_channels
from engine.diffusion.latent_formats import latent_format


class _Model:
    def __init__(self, family: str) -> None:
        self.format = latent_format(family, 1.0, {})

    def get_model_object(self, name: str) -> Any:
        assert name == "latent_format"
        return self.format


@pytest.mark.parametrize(
    ("family", "expected"),
    [
        ("flux2", (2, 128, 4, 6)),
        ("flux3", (2, 128, 4, 6)),
        ("qwen_image21", (2, 64, 4, 6)),
        ("flux", (2, 16, 8, 12)),
        ("chroma_radiance", (2, 3, 64, 96)),
    ],
)
def test_empty_latent_of_another_family_is_rescaled(family: str, expected: tuple[int, ...]) -> None:
    assert fix_empty_latent_channels(_Model(family), torch.zeros(2, 4, 8, 12)).shape == expected


def test_a_latent_in_the_model_channels_is_left_alone() -> None:
    latent = torch.zeros(1, 128, 8, 8)
    assert fix_empty_latent_channels(_Model("flux2"), latent) is latent
