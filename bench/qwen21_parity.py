"""Loom's Qwen-Image 2.1 against diffusers' own components on the same tiny random weights.

ComfyUI 0.3.64 (the one on this machine) predates Qwen-Image 2.1, so the reference is diffusers 0.42.1:
* the model call: Loom's MODEL loaded from a ComfyUI-layout file (fused `gate_up`, and once with the block
  matrices in int8 ConvRot) against `QwenImage21Transformer2DModel.forward` with the same weights
  (dequantised), text-to-image, on several latent sizes and prompt lengths;
* the VAE: Loom's VAELoader on the original-layout file against `AutoencoderKLQwenImage21` decode/encode;
* the text encoder with an image: Loom's CLIP (Qwen3-VL language model and vision tower from one file)
  against transformers' `Qwen3VLModel` holding the same weights, on the same token ids.

    OMP_NUM_THREADS=1 .venv/bin/python bench/qwen21_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401  (before diffusers: torchvision shim)


def transformer_rows(work: Path) -> list[tuple[str, float, float]]:
    import torch
    from safetensors.torch import save_file

    from engine.models import flow_families
    from tests.nodes.qwen21_fixtures import dequantised_model, fuse_mlp, quantise_convrot, tiny_transformer

    rows = []
    model = tiny_transformer(7, context=32)
    plain = fuse_mlp({k: v.contiguous() for k, v in model.state_dict().items()})
    for label, state in (("plain file", plain), ("int8 ConvRot file", quantise_convrot(plain))):
        path = work / f"{label.split()[0]}.safetensors"
        save_file({k: v.clone() for k, v in state.items()}, str(path))
        patcher = flow_families.load_diffusion_model(path)
        reference = dequantised_model(state, 7, 32)
        for height, width, text in ((4, 6, 7), (8, 8, 12), (6, 10, 3)):
            torch.manual_seed(height * 100 + width)
            x, context = torch.randn(1, 64, height, width), torch.randn(1, text, 32)
            sigma = torch.tensor([0.6])
            loom = (x - patcher.model.apply_model(x, sigma, c_crossattn=context)) / sigma
            mask = torch.tensor([[False] * text + [True] * (height * width // 4)])
            with torch.no_grad():
                out = reference(x.flatten(2).transpose(1, 2), context, sigma, [[(1, height, width)]], mask)[0]
            expected = out[:, -height * width :].transpose(1, 2).reshape(1, 64, height, width)
            rows.append(
                (
                    f"model call, {label}, latent {height}x{width}, {text} text tokens",
                    _diff(loom, expected),
                    _size(expected),
                )
            )
    return rows


def reference_rows(work: Path) -> list[tuple[str, float, float]]:
    """The model call with a reference latent spliced into the text at its slot (an edit), against diffusers
    given the same sequence its way: the reference's vision slots (one per 2×2 latent tokens) in the text,
    condition images first in `hidden_states`."""
    import torch
    from safetensors.torch import save_file

    from engine.models import flow_families
    from tests.nodes.qwen21_fixtures import dequantised_model, fuse_mlp, tiny_transformer

    model = tiny_transformer(8, context=32)
    state = fuse_mlp({k: v.contiguous() for k, v in model.state_dict().items()})
    path = work / "edit.safetensors"
    save_file({k: v.clone() for k, v in state.items()}, str(path))
    patcher = flow_families.load_diffusion_model(path)
    reference = dequantised_model(state, 8, 32)
    rows = []
    for (height, width), (ref_h, ref_w), slot in (((4, 6), (4, 4), 3), ((6, 4), (2, 6), 5)):
        torch.manual_seed(height + ref_w)
        x, context, ref = (
            torch.randn(1, 64, height, width),
            torch.randn(1, 9, 32),
            torch.randn(1, 64, ref_h, ref_w),
        )
        sigma = torch.tensor([0.4])
        extra = {"ref_latents": [ref], "image_slots": [slot]}
        loom = (x - patcher.model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)) / sigma
        ref_slots = ref_h * ref_w // 4
        vlm = torch.cat([context[:, :slot], torch.zeros(1, ref_slots, 32), context[:, slot:]], dim=1)
        mask = [False] * slot + [True] * ref_slots + [False] * (9 - slot) + [True] * (height * width // 4)
        tokens = torch.cat([ref.flatten(2).transpose(1, 2), x.flatten(2).transpose(1, 2)], dim=1)
        shapes = [[(1, ref_h, ref_w), (1, height, width)]]
        with torch.no_grad():
            out = reference(tokens, vlm, sigma, shapes, torch.tensor([mask]))[0]
        expected = out[:, -height * width :].transpose(1, 2).reshape(1, 64, height, width)
        label = f"model call with a {ref_h}x{ref_w} reference at slot {slot}, latent {height}x{width}"
        rows.append((label, _diff(loom, expected), _size(expected)))
    return rows


def vae_rows(work: Path) -> list[tuple[str, float, float]]:
    import torch
    from safetensors.torch import save_file

    from engine.diffusion.vae import vae_from_state_dict
    from tests.nodes.qwen21_fixtures import tiny_vae, vae_to_comfy

    reference = tiny_vae(9).eval()
    path = work / "vae.safetensors"
    save_file({k: v.contiguous() for k, v in vae_to_comfy(reference.state_dict()).items()}, str(path))
    from safetensors.torch import load_file

    loom = vae_from_state_dict(load_file(str(path)), {}, path.name)
    torch.manual_seed(1)
    latent = torch.randn(1, 64, 2, 3)
    pixels = loom.decode(latent)  # IMAGE [B, H, W, 4] in 0..1
    with torch.no_grad():
        expected = reference.decode(latent.unsqueeze(2)).sample[:, :, 0]
    expected = ((expected + 1) / 2).clamp(0, 1).movedim(1, -1)
    image = torch.rand(1, 32, 48, 3)
    encoded = loom.encode(image)
    rgba = torch.cat([image.movedim(-1, 1) * 2 - 1, torch.ones(1, 1, 32, 48)], dim=1)
    with torch.no_grad():
        mean = reference.encode(rgba.unsqueeze(2)).latent_dist.mode()[:, :, 0]
    return [
        ("VAE decode (RGBA)", _diff(pixels, expected), _size(expected)),
        ("VAE encode (RGB as opaque RGBA)", _diff(encoded, mean), _size(mean)),
    ]


def text_rows(work: Path) -> list[tuple[str, float, float]]:
    """Loom's conditioning of a prompt with an image (vision tokens kept) against transformers'
    `Qwen3VLModel` on the same weights and ids, read before the final norm from the user turn on."""
    import torch
    from transformers import Qwen3VLConfig
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLModel

    from engine.models import flow_families, qwen_vision
    from engine.models.tokenizer import qwen
    from tests.nodes.qwen21_fixtures import write_files

    write_files(work / "qwen21")
    clip = flow_families.load_clip(
        [work / "qwen21/text_encoders/qwen3vl_8b_int8_convrot.safetensors"], "qwen_image"
    )
    encoder = clip.encoders[0]
    torch.manual_seed(5)
    image = torch.rand(1, 96, 64, 3)
    tokens = clip.tokenize("make it blue", images=[image])
    tokens["keep_vision"] = True
    loom = clip.encode_from_tokens(tokens)

    config = Qwen3VLConfig(
        text_config=encoder.model.config.to_dict(), vision_config=encoder.visual.config.to_dict()
    )
    reference = Qwen3VLModel(config).eval()
    reference.language_model.load_state_dict(encoder.model.state_dict())
    reference.visual.load_state_dict(encoder.visual.state_dict())
    pixels, grid = qwen_vision.patches(image, 16, 2, 2, mean=(0.5,) * 3, std=(0.5,) * 3)
    count = grid[1] * grid[2] // 4
    text = "<|im_start|>system\nComprehend and analyze the provided prompt.<|im_end|>\n<|im_start|>user\n"
    text += (
        "<image1><|vision_start|><|image_pad|><|vision_end|>make it blue<|im_end|>\n<|im_start|>assistant\n"
    )
    ids: list[int] = []
    for token in qwen.encode(text):
        ids += [token] * (count if token == 151655 else 1)
    input_ids = torch.tensor([ids])
    hook = reference.language_model.norm.register_forward_hook(lambda _m, args, _o: args[0])
    out = reference(
        input_ids=input_ids,
        pixel_values=pixels,
        image_grid_thw=torch.tensor([grid]),
        mm_token_type_ids=(input_ids == 151655).int(),
        output_hidden_states=True,
    )
    hook.remove()
    starts = [i for i, token in enumerate(ids) if token == qwen.IM_START_ID]
    expected = out.hidden_states[-1][:, starts[1] :]
    return [
        (
            "Qwen3-VL conditioning with an image (vision tower, DeepStack)",
            _diff(loom, expected),
            _size(expected),
        )
    ]


def _diff(a: object, b: object) -> float:
    return float((a - b).abs().max())  # type: ignore[operator]


def _size(a: object) -> float:
    return float(a.abs().max())  # type: ignore[attr-defined]


def main() -> None:
    import torch

    torch.set_grad_enabled(False)
    with tempfile.TemporaryDirectory() as tmp:
        rows = (
            transformer_rows(Path(tmp))
            + reference_rows(Path(tmp))
            + vae_rows(Path(tmp))
            + text_rows(Path(tmp))
        )
    width = max(len(name) for name, _, _ in rows)
    print(f"{'comparison'.ljust(width)}  max |Loom - reference|  max |reference|")
    for name, value, size in rows:
        print(f"{name.ljust(width)}  {value:<22.3g}  {size:.3g}")
    worst, relative = max(v for _, v, _ in rows), max(v / s for _, v, s in rows)
    print(f"\nmax difference over {len(rows)} comparisons: {worst:.3g} (relative {relative:.3g})")


if __name__ == "__main__":
    main()
