"""DiffSynth's Qwen-Image ControlNet arithmetic, Loom's against ComfyUI 0.3.64's own module.

ComfyUI's ModelPatchLoader builds the patch at Qwen-Image's released size (60 blocks, 3072 wide) whatever the
file holds, and its Qwen-Image model at full width, so no tiny stand-in runs end to end there. This bench
therefore builds ComfyUI's `QwenImageBlockWiseControlNet` directly at a tiny width (in ComfyUI's venv), gives
it and Loom the same weights (with the inpaint mask channel), the same raw VAE latent and the same image
tokens, and compares the projected control tokens (latent normalisation, 2×2 packing, `img_in`) and every
block's control output.

    OMP_NUM_THREADS=1 .venv/bin/python bench/diffsynth_parity.py [--comfy /tmp/comfy/ComfyUI]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401

COMFY_SIDE = """
import sys, torch
from safetensors.torch import load_file, save_file
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.ops
from comfy_extras.nodes_model_patch import QwenImageBlockWiseControlNet
work = sys.argv_work
weights, data = load_file(work + "/patch.safetensors"), load_file(work + "/data.safetensors")
layers = 1 + max(int(k.split(".")[1]) for k in weights if k.startswith("controlnet_blocks."))
width, inputs = weights["img_in.weight"].shape
model = QwenImageBlockWiseControlNet(num_layers=layers, in_dim=64, additional_in_dim=inputs - 64, dim=width,
                                     operations=comfy.ops.manual_cast)
model.load_state_dict(weights)
latent = torch.cat([data["latent"], torch.ones_like(data["latent"][:, :1])], dim=1).unsqueeze(2)
with torch.no_grad():
    control = model.process_input_latent_image(latent)
    out = {"control": control}
    for i in range(layers):
        out[f"block{i}"] = model.control_block(data["img"], control, i)
save_file({k: v.contiguous() for k, v in out.items()}, work + "/comfy.safetensors")
"""


class _LatentOnlyVae:
    """Stands in for the VAE: returns the fixed raw latent (this bench compares what follows encoding)."""

    def __init__(self, latent: Any) -> None:
        self.latent = latent

    def spacial_compression_encode(self) -> int:
        return 8

    def encode(self, pixels: Any) -> Any:
        return self.latent


def main() -> None:
    import torch
    from safetensors.torch import load_file, save_file

    from engine.diffusion.model_patch_files import DiffSynthControl, control_block, model_patch_from_weights
    from tests.nodes.model_patch_fixtures import diffsynth_weights

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy/ComfyUI"))
    parser.add_argument("--python", type=Path, default=Path("/tmp/comfy/venv/bin/python"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-diffsynth-") as work:
        weights = diffsynth_weights(3, extra_channels=1)
        g = torch.Generator().manual_seed(4)
        latent = torch.randn(1, 16, 6, 10, generator=g)  # raw (un-normalised) VAE latent, 48×80 px
        img = torch.randn(1, 15, 128, generator=g)  # image tokens after a block
        save_file(weights, f"{work}/patch.safetensors")
        save_file({"latent": latent, "img": img}, f"{work}/data.safetensors")
        code = COMFY_SIDE.replace("sys.argv_work", repr(work))
        subprocess.run([str(args.python), "-c", code], cwd=args.comfy, check=True)
        comfy = load_file(f"{work}/comfy.safetensors")

        patch = model_patch_from_weights(weights, "bench")
        control = DiffSynthControl(patch, _LatentOnlyVae(latent), torch.zeros(1, 48, 80, 3), 1.0)
        ours = {"control": control.tokens(torch.zeros(1, 16, 6, 10))}
        for i in range(patch.layers):
            ours[f"block{i}"] = control_block(patch.weights, i, img, ours["control"])
        for key, value in ours.items():
            diff = (value - comfy[key]).abs().max().item()
            size = value.abs().max().item()
            print(f"{key:<8} {tuple(value.shape)}  max |value| {size:.3g}  max |Loom - ComfyUI| {diff:.3g}")


if __name__ == "__main__":
    main()
