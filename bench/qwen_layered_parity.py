"""Qwen-Image Layered, Loom against diffusers' own pipeline components on the same tiny random weights and
inputs. ComfyUI 0.3.64 predates Layered, so diffusers 0.42.1 is the reference here.

The model call: a tiny `QwenImageTransformer2DModel(use_additional_t_cond=True, use_layer3d_rope=True)`
(tests/nodes/qwen_layered_fixtures.py) is saved in ComfyUI's file layout and loaded by Loom as UNETLoader
does; Loom's `QwenImage` gets a 5-D latent [1, 16, layers + 1, h, w] and the conditioning image's raw
latent as a reference (normalised by Loom's Qwen latent format, placed at frame -1). diffusers gets the
same transformer weights with its own `QwenEmbedLayer3DRope`, the latent packed by
`QwenImageLayeredPipeline._pack_latents`, the image latent normalised and packed as that pipeline does and
appended, `img_shapes` as the pipeline builds them, `additional_t_cond` 0 and the timestep sigma; its
output tokens are cut to the generated ones and unpacked by `_unpack_latents`.

Rotary placements differ by design (Loom places tokens as ComfyUI does): on odd token grids diffusers
centres rows at -(h//2 + 1)… where ComfyUI uses -(h//2)…, and diffusers starts the text at the largest
half-size of all images (the conditioning image included) and at least at layers + 1, where ComfyUI uses
the generated latent's max(h//2, w//2). At the template's 640² (40×40 tokens, 2 layers) they agree.
The table shows Loom with its own placement and with diffusers' rope swapped in, so what remains in that
column is the model call itself.

The decode: the pipeline's RGBA VAE decoding of the layers (frame 0 dropped, each layer its own
one-frame video) against Loom's LatentCut + LatentCutToBatch + VAEDecode path on the same latent.

    OMP_NUM_THREADS=1 .venv/bin/python bench/qwen_layered_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# (name, latent height × width, layers, conditioning image latent height × width)
CASES = [
    ("even grid, 2 layers", (16, 16), 2, (16, 16)),
    ("even grid, 3 layers, wider image", (12, 20), 3, (12, 20)),
    ("larger image (text start differs)", (16, 16), 2, (12, 20)),
    ("odd token grid (rows differ)", (10, 14), 2, (10, 14)),
    ("layers + 1 > h/2 (text start differs)", (8, 8), 3, (8, 8)),
]
CONTEXT = 7  # text tokens


def diffusers_call(transformer: Any, x: Any, t: Any, context: Any, image: Any, vae_config: Any) -> Any:
    """The transformer called as QwenImageLayeredPipeline's denoising loop calls it."""
    import torch
    from diffusers import QwenImageLayeredPipeline as Pipe

    batch, channels, frames, height, width = x.shape
    packed = Pipe._pack_latents(x.permute(0, 2, 1, 3, 4), batch, channels, height, width, frames)
    mean = torch.tensor(vae_config.latents_mean).view(1, channels, 1, 1, 1)
    std = torch.tensor(vae_config.latents_std).view(1, channels, 1, 1, 1)
    normalised = (image.unsqueeze(2) - mean) / std
    image_h, image_w = image.shape[-2:]
    image_tokens = Pipe._pack_latents(normalised.permute(0, 2, 1, 3, 4), batch, channels, image_h, image_w, 1)
    img_shapes = [[*[(1, height // 2, width // 2)] * frames, (1, image_h // 2, image_w // 2)]] * batch
    with torch.no_grad():
        out = transformer(
            hidden_states=torch.cat([packed, image_tokens], dim=1),
            timestep=t,
            encoder_hidden_states=context,
            encoder_hidden_states_mask=torch.ones(context.shape[:2], dtype=torch.long),
            img_shapes=img_shapes,
            additional_t_cond=torch.zeros(batch, dtype=torch.long),
            return_dict=False,
        )[0][:, : packed.shape[1]]
    # _unpack_latents takes pixel sizes (it divides by the VAE's 8) and the layer count without frame 0.
    return Pipe._unpack_latents(out, height * 8, width * 8, frames - 1, 8)


def loom_call(model: Any, x: Any, t: Any, context: Any, image: Any) -> Any:
    import torch

    extra = model.added_conditions([{"reference_latents": [image]}], x, x.shape[0])
    with torch.no_grad():
        return model._forward(x, t, context, extra)


class PipelineRope:
    """diffusers' `QwenEmbedLayer3DRope` fed the pipeline's `img_shapes`: Loom describes its latent as one
    entry of `frames` frames, the pipeline as `frames` one-frame entries (which moves its text's start)."""

    def __init__(self) -> None:
        from diffusers.models.transformers.transformer_qwenimage import QwenEmbedLayer3DRope

        self.rope = QwenEmbedLayer3DRope(10000, [16, 56, 56], scale_rope=True)
        self.reference_step = -1  # what Loom's call sets; diffusers' rope puts the image at -1 itself

    def __call__(self, video_fhw: Any, max_txt_seq_len: Any, device: Any = None) -> Any:
        (frames, height, width), *references = video_fhw[0]
        shapes = [*[(1, height, width)] * frames, *references]
        return self.rope([shapes] * len(video_fhw), max_txt_seq_len=max_txt_seq_len, device=device)


def with_diffusers_rope(model: Any) -> Any:
    transformer = model.diffusion_model
    ours = transformer.__dict__.pop("pos_embed")
    object.__setattr__(transformer, "pos_embed", PipelineRope())
    return ours


def model_rows(work: Path) -> list[tuple[str, float, float, float]]:
    import torch
    from safetensors.torch import save_file

    from engine.models.flow_families import load_diffusion_model
    from tests.nodes.qwen_layered_fixtures import tiny_layered_transformer, tiny_rgba_vae

    reference = tiny_layered_transformer(seed=7, context=64).float()
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    save_file(state, str(work / "qwen_image_layered_tiny.safetensors"))
    model = load_diffusion_model(work / "qwen_image_layered_tiny.safetensors").model
    vae_config = tiny_rgba_vae(8).config
    generator = torch.Generator().manual_seed(0)
    rows = []
    for name, (height, width), layers, (image_h, image_w) in CASES:
        x = torch.randn(1, 16, layers + 1, height, width, generator=generator)
        image = torch.randn(1, 16, image_h, image_w, generator=generator)
        context = torch.randn(1, CONTEXT, 64, generator=generator)
        t = torch.tensor([0.63])
        expected = diffusers_call(reference, x, t, context, image, vae_config)
        ours = loom_call(model, x, t, context, image)
        saved = with_diffusers_rope(model)
        try:
            swapped = loom_call(model, x, t, context, image)
        finally:
            object.__setattr__(model.diffusion_model, "pos_embed", saved)
        assert ours.shape == expected.shape == x.shape, (ours.shape, expected.shape)
        scale = float(expected.abs().max())
        rows.append(
            (name, float((ours - expected).abs().max()), float((swapped - expected).abs().max()), scale)
        )
    return rows


def decode_rows(work: Path) -> list[tuple[str, float]]:
    """The pipeline's RGBA decode of the layers against Loom's node path, on the same VAE file."""
    import torch
    from diffusers import QwenImageLayeredPipeline  # noqa: F401  (the pipeline's decode is spelled below)
    from safetensors.torch import save_file

    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import open_state_dict
    from nodes.latent.cut import LatentCut, LatentCutToBatch
    from tests.nodes.flow_fixtures_new import wan_vae_to_comfy
    from tests.nodes.qwen_layered_fixtures import tiny_rgba_vae

    reference = tiny_rgba_vae(8).float()
    save_file(wan_vae_to_comfy(reference.state_dict()), str(work / "vae.safetensors"))
    vae = vae_from_state_dict(dict(open_state_dict(work / "vae.safetensors")[0]), {}, "vae")
    rows = []
    generator = torch.Generator().manual_seed(3)
    for layers, (height, width) in ((2, (8, 8)), (3, (6, 10))):
        latent = torch.randn(1, 16, layers + 1, height, width, generator=generator)
        # QwenImageLayeredPipeline after sampling: drop frame 0, one one-frame video per layer, to 0..1.
        frames = latent[:, :, 1:].permute(0, 2, 1, 3, 4).reshape(-1, 16, 1, height, width)
        with torch.no_grad():
            expected = reference.decode(frames, return_dict=False)[0].squeeze(2)
        expected = (expected / 2 + 0.5).clamp(0, 1).movedim(1, -1)
        cut = LatentCut().run({"samples": latent}, "t", 1, 16384)
        batch = LatentCutToBatch().run(cut, "t", 1)
        ours = vae.decode(batch["samples"])
        assert ours.shape == expected.shape == (layers, height * 8, width * 8, 4), (
            ours.shape,
            expected.shape,
        )
        rows.append((f"{layers} layers, latent {height}×{width}", float((ours - expected).abs().max())))
    return rows


def main() -> None:
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        rows = model_rows(work)
        decoded = decode_rows(work)
    print(f"{'model call (velocity)':42} {'Loom':>10} {'Loom+diffusers rope':>20} {'|ref| max':>10}")
    for name, ours, swapped, scale in rows:
        print(f"{name:42} {ours:10.2e} {swapped:20.2e} {scale:10.3f}")
    print(f"\n{'RGBA VAE decode of the layers':42} {'max |Δ| (0..1)':>15}")
    for name, diff in decoded:
        print(f"{name:42} {diff:15.2e}")
    call = max(swapped for _, _, swapped, _ in rows)
    placed = max(ours for (name, ours, _, _) in rows[:2])
    print(
        f"\nsummary: model call max |Δ| {call:.2e} with diffusers' placement, {placed:.2e} with Loom's where "
        f"the placements agree (even grids, image of the latent's size); decode max |Δ| "
        f"{max(d for _, d in decoded):.2e}"
    )


if __name__ == "__main__":
    main()
