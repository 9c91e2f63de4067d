"""VAE decoding on the CPU runs on channels-last activations: the IMAGE that comes out must match the
plain (NCHW) decode and be an ordinary contiguous [B, H, W, C] tensor, and nothing about the layout may
stick to the model's weights."""

from __future__ import annotations

import torch

from engine.diffusion.latent_formats import SD15
from engine.diffusion.vae import VAE
from engine.models.tiny import build_tiny


def test_decode_matches_the_plain_layout_and_returns_a_contiguous_image() -> None:
    model = build_tiny("sd1").vae.eval()
    vae = VAE.wrap(model, SD15())
    latents = torch.randn(5, 4, 8, 8, generator=torch.Generator().manual_seed(3))

    image = vae.decode(latents)

    with torch.no_grad():
        plain = ((model.decode(latents.contiguous()).sample + 1) / 2).clamp(0, 1).movedim(1, -1)
    side = 8 * vae.upscale_ratio
    assert image.shape == (5, side, side, 3)  # decoded in two chunks
    assert image.dtype == torch.float32
    assert image.is_contiguous()  # [B, H, W, C] in memory, as nodes and PNG writers read it
    torch.testing.assert_close(image, plain, rtol=0, atol=1e-5)
    assert all(p.is_contiguous() for p in model.parameters())  # the layout is the activations' only


def test_encoding_the_decoded_image_gives_latents_in_the_usual_layout() -> None:
    vae = VAE.wrap(build_tiny("sd1").vae.eval(), SD15())
    image = vae.decode(torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(4)))

    latents = vae.encode(image)

    assert latents.shape == (1, 4, 8, 8)
    assert latents.is_contiguous()
