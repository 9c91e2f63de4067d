"""Flux and Qwen-Image ControlNets, Loom's modules against ComfyUI 0.3.64's own, at a tiny width.

ComfyUI builds Flux and Qwen-Image ControlNets (and models) at their released widths whatever the file
holds; a shallow full-width run needs about 5 GB per engine, more than this shared machine has free (see
`bench/flow_controlnet_parity.py`, which samples SD3/SD3.5 end to end and takes `--families flux,qwen_image`
where memory allows). This bench builds ComfyUI's `ControlNetFlux` and `QwenImageControlNetModel` directly
at the tiny widths of Loom's test stand-ins (in ComfyUI's venv, its own key conversion for the diffusers
layouts), loads the same files, feeds both the same latent, timestep, text, pooled vector, guidance and
hint, and compares every residual of ComfyUI's control dict: InstantX Flux, Flux Union "auto" and with a
type, XLabs' Flux (pixel hint), InstantX Qwen-Image Union and Inpainting (68 hint channels).

    OMP_NUM_THREADS=1 .venv/bin/python bench/flow_controlnet_modules_parity.py [--comfy /tmp/comfy]
        [--lock /tmp/comfy.lock]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from comfy_client import COMFY_DRIVER_HEAD  # noqa: E402  (bench/comfy_client.py)

import engine  # noqa: E402, F401

# name: (file writer, family, union type or None)
CASES = ["flux instantx", "flux union auto", "flux union depth", "flux xlabs", "qwen union", "qwen inpaint"]

DRIVER = (
    COMFY_DRIVER_HEAD
    + """import comfy.ops, comfy.model_detection
from comfy.ldm.flux.controlnet import ControlNetFlux
from comfy.ldm.qwen_image.controlnet import QwenImageControlNetModel
from safetensors.torch import load_file, save_file
data = load_file(args["data"])
ops = comfy.ops.disable_weight_init
flux = dict(in_channels=16, out_channels=16, vec_in_dim=64, context_in_dim=192, hidden_size=128,
            mlp_ratio=4.0, num_heads=1, axes_dim=[16, 56, 56], theta=10000, patch_size=2, qkv_bias=True,
            guidance_embed=True)
out = {}
for name, path in args["files"].items():
    sd = load_file(path)
    with torch.no_grad():
        if name.startswith("flux") and name != "flux xlabs":
            rest = dict(sd)  # ComfyUI's conversion pops what it renames; the rest joins as it is
            converted = comfy.model_detection.convert_diffusers_mmdit(rest, "")
            converted.update(rest)
            mode = sd.get("controlnet_mode_embedder.weight")
            singles = sum(k.startswith("single_transformer_blocks.") and k.endswith("norm.linear.weight")
                          for k in sd)
            model = ControlNetFlux(latent_input=True, num_union_modes=0 if mode is None else mode.shape[0],
                                   operations=ops, depth=1, depth_single_blocks=singles,
                                   control_latent_channels=sd["controlnet_x_embedder.weight"].shape[1] // 4,
                                   **flux)
            model.load_state_dict(converted, strict=False)
            kwargs = {"control_type": [1]} if name == "flux union depth" else {}
            result = model(data["x"], data["sigma"], data["context"], y=data["pooled"],
                           guidance=data["guidance"], hint=data["latent_hint"], **kwargs)
        elif name == "flux xlabs":
            model = ControlNetFlux(operations=ops, depth=2, depth_single_blocks=0, **flux)
            model.load_state_dict(sd, strict=False)
            result = model(data["x"], data["sigma"], data["context"], y=data["pooled"],
                           guidance=data["guidance"], hint=data["pixel_hint"])
        else:
            extra = sd["controlnet_x_embedder.weight"].shape[1] - 64
            model = QwenImageControlNetModel(extra_condition_channels=extra, operations=ops,
                                             num_layers=1, num_attention_heads=1, joint_attention_dim=128)
            model.load_state_dict(sd, strict=False)
            hint = data["latent_hint"] if extra == 0 else data["latent_hint_mask"]
            result = model(data["x"].unsqueeze(2), data["sigma"], data["qwen_context"],
                           hint=hint.unsqueeze(2))
    for key, values in result.items():
        for i, value in enumerate(values):
            out[f"{name}/{key}/{i}"] = value.float().clone().contiguous()
save_file(out, args["result"])
"""
)


def write_inputs(folder: Path) -> tuple[dict[str, str], Path]:
    from tests.nodes.flow_controlnet_fixtures import (
        flux_instantx_controlnet,
        qwen_instantx_controlnet,
        xlabs_flux_controlnet,
    )

    states = {
        "flux instantx": flux_instantx_controlnet(seed=61),
        "flux union auto": flux_instantx_controlnet(seed=62, union=True),
        "flux union depth": flux_instantx_controlnet(seed=62, union=True),
        "flux xlabs": xlabs_flux_controlnet(seed=63),
        "qwen union": qwen_instantx_controlnet(seed=64),
        "qwen inpaint": qwen_instantx_controlnet(seed=65, inpaint=True),
    }
    files = {}
    for name, state in states.items():
        files[name] = str(folder / f"{name.replace(' ', '_')}.safetensors")
        save_file(state, files[name])
    g = torch.Generator().manual_seed(5)
    latent_hint = torch.randn(1, 16, 8, 10, generator=g)
    data = {
        "x": torch.randn(1, 16, 8, 10, generator=g),
        "sigma": torch.tensor([0.7]),
        "context": torch.randn(1, 12, 192, generator=g),
        "qwen_context": torch.randn(1, 12, 128, generator=g),
        "pooled": torch.randn(1, 64, generator=g),
        "guidance": torch.tensor([3.5]),
        "latent_hint": latent_hint,
        "latent_hint_mask": torch.cat([latent_hint, (torch.rand(1, 1, 8, 10, generator=g) > 0.5).float()], 1),
        "pixel_hint": torch.rand(1, 3, 64, 80, generator=g),
    }
    save_file(data, str(folder / "data.safetensors"))
    return files, folder / "data.safetensors"


def run_loom(files: dict[str, str], data_path: Path) -> dict[str, torch.Tensor]:
    from engine.models.controlnet import load_controlnet

    data = load_file(str(data_path))
    out = {}
    for name, path in files.items():
        module = load_controlnet(path).control_model
        extra = {"control_type": [1]} if name == "flux union depth" else {}
        added: dict[str, Any] = {"pooled": data["pooled"], "guidance": data["guidance"]}
        if name == "flux xlabs":
            hint = data["pixel_hint"]
        elif name == "qwen inpaint":
            hint = data["latent_hint_mask"]
        else:
            hint = data["latent_hint"]
        context = data["qwen_context"] if name.startswith("qwen") else data["context"]
        with torch.no_grad():
            result = module(data["x"], data["sigma"], context, hint, added, extra, None)
        for key, values in result.items():
            for i, value in enumerate(values):
                out[f"{name}/{key}/{i}"] = value.float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs")
    options = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files, data = write_inputs(folder)
        loom = run_loom(files, data)
        args = {
            "comfy_root": str(options.comfy / "ComfyUI"), "files": files, "data": str(data),
            "result": str(folder / "comfy.safetensors"),
        }  # fmt: skip
        command = [str(options.comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
        if options.lock is not None:
            command = ["flock", str(options.lock), *command]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(command, check=True, env=env, cwd=str(options.comfy / "ComfyUI"))
        comfy = load_file(str(folder / "comfy.safetensors"))
    print(f"{'case':<18} {'residuals':>9} {'max |value|':>12} {'max |Loom - ComfyUI|':>21}")
    worst = 0.0
    for name in CASES:
        keys = sorted(k for k in comfy if k.startswith(name + "/"))
        ours = sorted(k for k in loom if k.startswith(name + "/"))
        if keys != ours:
            print(f"{name:<18} residual lists differ: ComfyUI {len(keys)}, Loom {len(ours)}")
            worst = float("inf")
            continue
        size = max(float(comfy[k].abs().max()) for k in keys)
        diff = max(float((comfy[k] - loom[k]).abs().max()) for k in keys)
        worst = max(worst, diff / size)
        print(f"{name:<18} {len(keys):>9} {size:>12.3g} {diff:>21.3g}")
    print(f"summary: worst relative difference {worst:.2e}")


if __name__ == "__main__":
    main()
