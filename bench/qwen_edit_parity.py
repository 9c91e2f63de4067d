"""Qwen-Image Edit, Loom against ComfyUI 0.3.64's own classes on the same tiny random weights and inputs:
the transformer with reference latents, and the prompt with an image (tokenizer, vision tower, multimodal
positions, system-prompt trim).

ComfyUI cannot load a tiny Qwen-Image file (its model detection fixes the released widths), but its
`comfy.ldm.qwen_image.model.QwenImageTransformer2DModel` can be built at any width. This script writes a
tiny transformer (tests/nodes/flow_fixtures_new.py) and inputs, runs ComfyUI's class in ComfyUI's venv
(a subprocess under /tmp/comfy.lock), and compares its velocity with Loom's `QwenImage` forward, once
with Loom's rotary placement (engine.models.qwen_image.CentredRope) and once with diffusers' own
`QwenEmbedRope`, over grids with even and odd token counts and a reference larger than the output.

The prompt: ComfyUI's `QwenImageTokenizer` and `QwenImageTEModel` with their Qwen2.5-VL config and vision
tower shrunk to the stand-in's widths (module attributes replaced inside that subprocess only), fed the
same images (off the 28-pixel grid, and big enough for several attention windows) as Loom's CLIP.
ComfyUI 0.3.64 leaves the vision tower's tokens in its attention-window order; later ComfyUI restores
raster order, as transformers (and Loom) do: the table shows Loom against both.

    OMP_NUM_THREADS=1 .venv/bin/python bench/qwen_edit_parity.py [--comfy /tmp/comfy]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Prompts with an image: (instruction, image height × width).
PROMPTS = [("make it blue", (70, 100)), ("put a hat on the fox", (300, 410)), ("", (56, 56))]
# (name, latent height × width, reference latents' height × width)
CASES = [
    ("even, same-size reference", (8, 8), [(8, 8)]),
    ("no reference, odd grid", (10, 6), []),
    ("odd grid, larger reference", (10, 6), [(14, 18)]),
    ("two references (Plus)", (8, 12), [(8, 12), (6, 6)]),
]


def comfy_side(work: Path) -> None:
    """Run in ComfyUI's venv with ComfyUI's folder on sys.path: its model on the saved weights/inputs."""
    from comfy.cli_args import args

    args.cpu = True  # as `main.py --cpu`: read when comfy.model_management is first imported
    import comfy.ops
    import torch
    from comfy.ldm.qwen_image.model import QwenImageTransformer2DModel
    from safetensors.torch import load_file, save_file

    weights = load_file(str(work / "transformer.safetensors"))
    model = QwenImageTransformer2DModel(
        num_layers=2,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=weights["txt_in.weight"].shape[1],
        dtype=torch.float32,
        operations=comfy.ops.disable_weight_init,
    )
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    inputs = load_file(str(work / "inputs.safetensors"))
    out = {}
    for index in range(len(CASES)):
        refs = [inputs[k].unsqueeze(2) for k in sorted(inputs) if k.startswith(f"{index}.ref")]
        with torch.no_grad():
            velocity = model(
                inputs[f"{index}.x"].unsqueeze(2),
                inputs[f"{index}.t"],
                inputs[f"{index}.context"],
                ref_latents=refs or None,
            )
        out[str(index)] = velocity[:, :, 0].contiguous()
    out.update(comfy_prompts(work, weights["txt_in.weight"].shape[1]))
    save_file(out, str(work / "comfy.safetensors"))


def comfy_prompts(work: Path, width: int) -> dict[str, Any]:
    """ComfyUI's own tokenizer and Qwen2.5-VL text encoder, shrunk to the stand-in's widths."""
    import dataclasses

    import comfy.text_encoders.llama as llama
    import comfy.text_encoders.qwen_vl as qwen_vl
    import torch
    from comfy.text_encoders.qwen_image import QwenImageTEModel, QwenImageTokenizer
    from safetensors.torch import load_file

    @dataclasses.dataclass
    class Tiny(llama.Qwen25_7BVLI_Config):
        vocab_size: int = 151936
        hidden_size: int = width
        intermediate_size: int = 2 * width
        num_hidden_layers: int = 2
        num_attention_heads: int = width // 128
        num_key_value_heads: int = width // 128

    full_tower = qwen_vl.Qwen2VLVisionTransformer

    undo_windows = [False]

    def tiny_tower(**kwargs: Any) -> Any:
        tiny = {"hidden_size": 80, "intermediate_size": 96, "num_heads": 1, "num_layers": 2}
        tower = full_tower(**{**kwargs, **tiny})
        windowed = tower.forward

        def forward(pixel_values: Any, image_grid_thw: Any = None) -> Any:
            # 0.3.64 leaves the tokens in attention-window order; later ComfyUI (and transformers)
            # put them back in raster order. Both are measured.
            out = windowed(pixel_values, image_grid_thw)
            if not undo_windows[0]:
                return out
            return out[torch.argsort(tower.get_window_index(image_grid_thw)[0])]

        tower.forward = forward
        return tower

    llama.Qwen25_7BVLI_Config = Tiny
    qwen_vl.Qwen2VLVisionTransformer = tiny_tower
    encoder = QwenImageTEModel(device="cpu", dtype=torch.float32)
    missing, _ = encoder.load_sd(load_file(str(work / "text_encoder.safetensors")))
    assert not missing, missing
    tokenizer = QwenImageTokenizer()
    images = load_file(str(work / "images.safetensors"))
    out = {}
    for undo, name in ((False, "prompt"), (True, "raster")):
        undo_windows[0] = undo
        for index, (prompt, _) in enumerate(PROMPTS):
            tokens = tokenizer.tokenize_with_weights(prompt, images=[images[str(index)]])
            with torch.no_grad():
                out[f"{name}{index}"] = encoder.encode_token_weights(tokens)[0].contiguous()
    return out


def loom_prompts(work: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    from engine.models.flow_families import load_clip

    clip = load_clip([work / "text_encoder.safetensors"], "qwen_image")
    images = load_file(str(work / "images.safetensors"))
    return {
        f"prompt{index}": clip.encode_from_tokens(clip.tokenize(prompt, images=[images[str(index)]]))
        for index, (prompt, _) in enumerate(PROMPTS)
    }


def loom_side(work: Path, rope: str) -> dict[str, Any]:
    import torch
    from safetensors.torch import load_file

    from engine.models import qwen_image
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(work / "transformer.safetensors").model
    if rope == "diffusers":
        from diffusers.models.transformers.transformer_qwenimage import QwenEmbedRope

        del model.diffusion_model.__dict__["pos_embed"]
        model.diffusion_model.pos_embed = QwenEmbedRope(10000, [16, 56, 56], scale_rope=True)
    assert rope == "diffusers" or isinstance(model.diffusion_model.pos_embed, qwen_image.CentredRope)
    inputs = load_file(str(work / "inputs.safetensors"))
    out = {}
    for index in range(len(CASES)):
        refs = [inputs[k] for k in sorted(inputs) if k.startswith(f"{index}.ref")]
        extra = {"ref_latents": refs} if refs else {}
        with torch.no_grad():
            out[str(index)] = model._forward(
                inputs[f"{index}.x"], inputs[f"{index}.t"], inputs[f"{index}.context"], extra
            )
    return out


def write_inputs(work: Path) -> None:
    import torch
    from safetensors.torch import save_file

    from tests.nodes.flow_fixtures_new import (
        qwen_file_state,
        tiny_qwen,
        tiny_qwen_image_transformer,
        tiny_qwen_vision,
    )

    transformer = tiny_qwen_image_transformer(seed=7, context=128)
    language, vision = tiny_qwen("qwen25", 8, hidden=128), tiny_qwen_vision(9, 128)
    text = qwen_file_state(language) | {"visual." + k: v.contiguous() for k, v in vision.state_dict().items()}
    save_file(text, str(work / "text_encoder.safetensors"))
    generator = torch.Generator().manual_seed(1)
    images = {str(i): torch.rand(1, h, w, 3, generator=generator) for i, (_, (h, w)) in enumerate(PROMPTS)}
    save_file(images, str(work / "images.safetensors"))
    save_file(
        {k: v.contiguous() for k, v in transformer.state_dict().items()},
        str(work / "transformer.safetensors"),
    )
    generator = torch.Generator().manual_seed(0)
    tensors = {}
    for index, (_, (height, width), refs) in enumerate(CASES):
        tensors[f"{index}.x"] = torch.randn(1, 16, height, width, generator=generator)
        tensors[f"{index}.t"] = torch.tensor([0.7])
        tensors[f"{index}.context"] = torch.randn(1, 9, 128, generator=generator)
        for number, (ref_h, ref_w) in enumerate(refs):
            tensors[f"{index}.ref{number}"] = torch.randn(1, 16, ref_h, ref_w, generator=generator)
    save_file(tensors, str(work / "inputs.safetensors"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--comfy-side", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.comfy_side:
        comfy_side(args.comfy_side)
        return
    sys.path.insert(0, str(ROOT))
    from safetensors.torch import load_file

    import engine  # noqa: F401  (before diffusers: torchvision shim)

    with tempfile.TemporaryDirectory(prefix="loom-qwen-edit-") as tmp:
        work = Path(tmp)
        write_inputs(work)
        command = [
            "flock", "/tmp/comfy.lock", str(args.comfy / "venv" / "bin" / "python"),
            str(Path(__file__).resolve()), "--comfy-side", str(work),
        ]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(args.comfy / "ComfyUI")}
        subprocess.run(command, cwd=args.comfy / "ComfyUI", check=True, env=env)
        comfy = load_file(str(work / "comfy.safetensors"))
        ours = loom_side(work, "comfy")
        diffusers = loom_side(work, "diffusers")
        prompts = loom_prompts(work)
    print(f"{'case':<30}  {'Loom vs ComfyUI':>16}  {'diffusers rope vs ComfyUI':>26}")
    worst = 0.0
    for index, (name, _, _) in enumerate(CASES):
        key = str(index)
        delta = (ours[key] - comfy[key]).abs().max().item()
        other = (diffusers[key] - comfy[key]).abs().max().item()
        worst = max(worst, delta)
        print(f"{name:<30}  {delta:>16.2e}  {other:>26.2e}")
    print(
        f"\n{'prompt with an image':<34}  {'tokens':>8}  {'vs ComfyUI 0.3.64':>18}  {'vs raster order':>16}"
    )
    worst_prompt = 0.0
    for index, (prompt, (height, width)) in enumerate(PROMPTS):
        mine, theirs, raster = prompts[f"prompt{index}"], comfy[f"prompt{index}"], comfy[f"raster{index}"]
        assert mine.shape == theirs.shape, (mine.shape, theirs.shape)
        delta = (mine - raster).abs().max().item()
        worst_prompt = max(worst_prompt, delta)
        as_is = (mine - theirs).abs().max().item()
        print(f"{f'{prompt!r} {width}x{height}':<34}  {mine.shape[1]:>8}  {as_is:>18.2e}  {delta:>16.2e}")
    print(
        f"\nLoom against ComfyUI: velocity with reference latents max |Δ| {worst:.2e}, "
        f"prompt embedding with an image max |Δ| {worst_prompt:.2e} (vision tokens in raster order)"
    )


if __name__ == "__main__":
    main()
