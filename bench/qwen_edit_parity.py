"""Qwen-Image's transformer with reference latents: Loom against ComfyUI 0.3.64's own model class, on the
same tiny random weights and inputs.

ComfyUI cannot load a tiny Qwen-Image file (its model detection fixes the released widths), but its
`comfy.ldm.qwen_image.model.QwenImageTransformer2DModel` can be built at any width. This script writes a
tiny transformer (tests/nodes/flow_fixtures_new.py) and inputs, runs ComfyUI's class in ComfyUI's venv
(a subprocess under /tmp/comfy.lock), and compares its velocity with Loom's `QwenImage` forward, once
with Loom's rotary placement (engine.models.qwen_image.CentredRope) and once with diffusers' own
`QwenEmbedRope`, over grids with even and odd token counts and a reference larger than the output.

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
    save_file(out, str(work / "comfy.safetensors"))


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

    from tests.nodes.flow_fixtures_new import tiny_qwen_image_transformer

    transformer = tiny_qwen_image_transformer(seed=7, context=128)
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
    print(f"{'case':<30}  {'Loom vs ComfyUI':>16}  {'diffusers rope vs ComfyUI':>26}")
    worst = 0.0
    for index, (name, _, _) in enumerate(CASES):
        key = str(index)
        delta = (ours[key] - comfy[key]).abs().max().item()
        other = (diffusers[key] - comfy[key]).abs().max().item()
        worst = max(worst, delta)
        print(f"{name:<30}  {delta:>16.2e}  {other:>26.2e}")
    print(f"\nLoom's Qwen-Image velocity with reference latents: max |Δ| {worst:.2e} against ComfyUI's")


if __name__ == "__main__":
    main()
