"""Same-seed parity of Loom and a CPU ComfyUI 0.3.64 sampling with ControlNets of the flow families
(PSNR of the sampled latents): Stability's SD3.5 ControlNet (canny and blur layouts, one with a percent
range), InstantX's SD3 ControlNet, InstantX's Flux ControlNet and a Flux Union one given a type, InstantX's
Qwen-Image Union and Inpainting ControlNets.

Both engines load the same files: the diffusion model (ComfyUI's key layout) and the ControlNet (its
real layout, `tests/nodes/flow_controlnet_fixtures.py` for the small ones). ComfyUI builds SD3 at the
file's width (a 128-wide, 2-block SD3.5-style model with a 2048-wide pooled vector, which ComfyUI's SD3.5
ControlNet takes), but Flux and Qwen-Image and their ControlNets at the released widths, so those are
shallow full-width files (one double and one single block; Qwen-Image one block; random bf16 weights, as
`bench/families_parity.py` writes them). The hint image goes through the same stand-in VAE in both (8×8
average pooling and a fixed 3→16 channel map: the real VAEs are compared elsewhere), so what is compared is
the hint's fitting and preprocessing, the latent normalisation, the ControlNet and where its residuals
join the model, strength and percent range. `--lock /tmp/comfy.lock` runs the ComfyUI part under flock.

    OMP_NUM_THREADS=1 .venv/bin/python bench/flow_controlnet_parity.py [--comfy /tmp/comfy] [--lock FILE]
        [--families sd3,flux,qwen_image]
"""

from __future__ import annotations

import argparse
import gc
import json
import math
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
import engine  # noqa: E402, F401

STEPS, SEED, SIZE = 4, 42, 64
# (name, family, controlnet file, strength, start, end, union type or -1, inpaint mask)
CASES: list[tuple[str, str, str, float, float, float, int, bool]] = [
    ("sd3.5 canny", "sd3", "sd35_canny", 0.8, 0.0, 1.0, -1, False),
    ("sd3.5 blur 0-60%", "sd3", "sd35_blur", 1.0, 0.0, 0.6, -1, False),
    ("sd3 instantx", "sd3", "sd3_instantx", 0.7, 0.0, 1.0, -1, False),
    ("flux instantx", "flux", "flux_instantx", 0.6, 0.0, 1.0, -1, False),
    ("flux union depth", "flux", "flux_union", 0.8, 0.1, 1.0, 1, False),
    ("qwen union", "qwen_image", "qwen_union", 1.0, 0.0, 1.0, -1, False),
    ("qwen inpainting", "qwen_image", "qwen_inpaint", 1.0, 0.0, 1.0, -1, True),
]
CFG = {"sd3": 4.5, "flux": 1.0, "qwen_image": 2.5}
CONDITIONING = {"sd3": (192, 2048), "flux": (4096, 768), "qwen_image": (3584, None)}

# What both engines run: the stand-in VAE, the hint, the mask, the conditioning with the control on it.
COMMON = """
import torch
import torch.nn.functional as F

class PoolVae:
    def __init__(self, weight, bias, frames):
        self.weight, self.bias, self.frames = weight, bias, frames
    def spacial_compression_encode(self):
        return 8
    def encode(self, pixels):
        pooled = F.avg_pool2d(pixels.movedim(-1, 1).float(), 8)
        latent = torch.einsum("oc,bchw->bohw", self.weight, pooled) + self.bias[None, :, None, None]
        return latent.unsqueeze(2) if self.frames else latent

def controlled(cond, control, case, data, vae, fit):
    name, family, file, strength, start, end, union, inpaint = case
    image = data["image"]
    extra = []
    if inpaint:
        mask = 1.0 - data["mask"].reshape(-1, 1, data["mask"].shape[-2], data["mask"].shape[-1])
        keep = fit(mask, image.shape[2], image.shape[1]).round()
        image = image * keep.movedim(1, -1).repeat(1, 1, 1, image.shape[3])
        extra = [mask]
    if union >= 0:
        control = control.copy()
        control.set_extra_arg("control_type", [union])
    hint = image.movedim(-1, 1)
    c = control.copy().set_cond_hint(hint, strength, (start, end), vae=vae, extra_concat=extra)
    pooled = cond.get("pooled")
    positive = {"pooled_output": pooled, "control": c, "control_apply_to_uncond": False}
    if family == "flux":
        positive["guidance"] = 3.5
    negative = {"pooled_output": None if pooled is None else torch.zeros_like(pooled), "control": c,
                "control_apply_to_uncond": False}
    return [[cond["context"], positive]], [[torch.zeros_like(cond["context"]), negative]]
"""

DRIVER = """
import gc, json, sys
args = json.loads(sys.argv[1])
sys.argv = ["parity", "--cpu"]
sys.path.insert(0, args["comfy_root"])
torch_threads = 1
import torch
torch.set_num_threads(1)
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd, comfy.sample, comfy.controlnet, comfy.utils
from safetensors.torch import load_file, save_file
exec(args["common"])
fit = lambda m, w, h: comfy.utils.common_upscale(m, w, h, "bilinear", "center")
data = load_file(args["data"])
out, loaded, model = {}, None, None
for case in args["cases"]:
    control = positive = negative = None
    gc.collect()
    family = case[1]
    if family != loaded:
        model = None
        model, loaded = comfy.sd.load_diffusion_model(args["files"][family]), family
    try:  # one failing case (reported) does not lose the others
        control = comfy.controlnet.load_controlnet(args["controlnets"][case[2]])
        vae = PoolVae(data["vae_weight"], data["vae_bias"], family == "qwen_image")
        positive, negative = controlled(load_file(args["conds"][family]), control, case, data, vae, fit)
        latent = torch.zeros([1, 16, args["size"] // 8, args["size"] // 8])
        if family == "qwen_image":
            latent = latent.unsqueeze(2)
        noise = comfy.sample.prepare_noise(latent, args["seed"])
        samples = comfy.sample.sample(model, noise, args["steps"], args["cfg"][family], "euler", "simple",
                                      positive, negative, latent, seed=args["seed"], disable_pbar=True)
        out[case[0]] = samples.reshape(1, 16, args["size"] // 8, -1).float().contiguous()
    except Exception:
        import traceback
        traceback.print_exc()
    save_file(out, args["result"])
"""


def _random_like(named: dict[str, Any], seed: int) -> dict[str, torch.Tensor]:
    """Random bf16 weights of the shapes of `named` (meta tensors): RMS scales near 1, matrices scaled by
    their fan-in, the rest small."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, value in named.items():
        if key.endswith(".scale") or (value.ndim == 1 and "norm" in key and key.endswith(".weight")):
            tensor = 1 + 0.1 * torch.randn(value.shape, generator=generator)
        elif value.ndim >= 2:
            fan_in = math.prod(value.shape[1:])
            tensor = torch.randn(value.shape, generator=generator) / math.sqrt(fan_in)
        else:
            tensor = 0.02 * torch.randn(value.shape, generator=generator)
        state[key] = tensor.to(torch.bfloat16).contiguous()
    return state


def write_files(folder: Path, families: set[str]) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    from accelerate import init_empty_weights
    from diffusers import FluxControlNetModel, QwenImageControlNetModel, SD3Transformer2DModel

    from bench.families_parity import write_shallow
    from tests.nodes.flow_controlnet_fixtures import sd3_instantx_controlnet, sd35_controlnet
    from tests.nodes.flow_fixtures import sd3_to_comfy

    files, controlnets = {}, {}
    if "sd3" in families:
        torch.manual_seed(1)
        sd3 = SD3Transformer2DModel(
            sample_size=32, patch_size=2, in_channels=16, num_layers=2, attention_head_dim=64,
            num_attention_heads=2, joint_attention_dim=192, caption_projection_dim=128,
            pooled_projection_dim=2048, out_channels=16, pos_embed_max_size=16, qk_norm="rms_norm",
        )  # fmt: skip
        with torch.no_grad():
            for p in sd3.parameters():
                p.normal_(0, 0.05)
        files["sd3"] = str(folder / "sd3.safetensors")
        save_file({k: v.contiguous() for k, v in sd3_to_comfy(sd3.state_dict(), 2).items()}, files["sd3"])
        for key, state in (
            ("sd35_canny", sd35_controlnet(seed=3, width=128, control_type=1, pooled=2048)),
            ("sd35_blur", sd35_controlnet(seed=4, width=128, blocks=2, control_type=0, pooled=2048)),
            ("sd3_instantx", sd3_instantx_controlnet(seed=5, width=128, pooled=2048)),
        ):
            controlnets[key] = str(folder / f"{key}.safetensors")
            save_file(state, controlnets[key])
    for family in ("flux", "qwen_image"):
        if family not in families:
            continue
        files[family] = str(folder / f"shallow_{family}.safetensors")
        write_shallow(family, Path(files[family]))
        with init_empty_weights():
            if family == "flux":
                metas = {
                    "flux_instantx": FluxControlNetModel(
                        num_layers=1, num_single_layers=1, guidance_embeds=True
                    ),
                    "flux_union": FluxControlNetModel(
                        num_layers=1, num_single_layers=0, guidance_embeds=True, num_mode=10
                    ),
                }  # fmt: skip
            else:
                metas = {
                    "qwen_union": QwenImageControlNetModel(num_layers=1),
                    "qwen_inpaint": QwenImageControlNetModel(num_layers=1, extra_condition_channels=4),
                }
        for seed, (key, meta) in enumerate(metas.items(), start=20):
            controlnets[key] = str(folder / f"{key}.safetensors")
            save_file(_random_like(meta.state_dict(), seed), controlnets[key])
    generator = torch.Generator().manual_seed(7)
    conds = {}
    for family, (context_width, pooled_width) in CONDITIONING.items():
        tensors = {"context": torch.randn(1, 12, context_width, generator=generator)}
        if pooled_width is not None:
            tensors["pooled"] = torch.randn(1, pooled_width, generator=generator)
        conds[family] = str(folder / f"cond_{family}.safetensors")
        save_file(tensors, conds[family])
    return files, controlnets, conds


def write_data(path: Path) -> None:
    """The hint image (96×64: wider than the 64×64 latent's pixels, so it is centre-cropped), an inpainting
    mask and the stand-in VAE's weights."""
    generator = torch.Generator().manual_seed(9)
    image = torch.zeros(1, 64, 96, 3)
    image[:, 16:48, 30:40] = 1.0
    image[:, 40:56, 50:80, 1] = 0.6
    image += 0.1 * torch.rand(image.shape, generator=generator)
    mask = torch.zeros(1, 64, 96)
    mask[:, :, 48:] = 1.0
    save_file(
        {
            "image": image.clamp(0, 1),
            "mask": mask,
            "vae_weight": torch.randn(16, 3, generator=generator),
            "vae_bias": 0.1 * torch.randn(16, generator=generator),
        },
        str(path),
    )


def run_loom(files: dict[str, str], controlnets: dict[str, str], conds: dict[str, str], data_path: Path,
             cases: list[Any]) -> dict[str, torch.Tensor]:  # fmt: skip
    from engine.diffusion.controlnet import fit_image
    from engine.models.controlnet import load_controlnet
    from engine.models.flow_families import load_diffusion_model

    scope: dict[str, Any] = {}
    exec(COMMON, scope)
    data = load_file(str(data_path))
    out, loaded, model = {}, None, None
    for case in cases:
        family = case[1]
        if family != loaded:
            model = None
            model, loaded = load_diffusion_model(Path(files[family])), family
            cond = load_file(conds[family])
            plain = [[cond["context"], {"pooled_output": cond.get("pooled"), "guidance": 3.5}]]
            zero = [
                [
                    torch.zeros_like(cond["context"]),
                    {
                        "pooled_output": None
                        if cond.get("pooled") is None
                        else torch.zeros_like(cond["pooled"])
                    },
                ]
            ]
            out["plain " + family] = _sample(model, plain, zero, family)
        control = load_controlnet(controlnets[case[2]])
        vae = scope["PoolVae"](data["vae_weight"], data["vae_bias"], False)
        fit = lambda m, w, h: fit_image(m, w, h, "bilinear")  # noqa: E731
        positive, negative = scope["controlled"](load_file(conds[family]), control, case, data, vae, fit)
        out[case[0]] = _sample(model, positive, negative, family)
        del control, positive, negative  # the full-width ControlNets are GBs: one alive at a time
        gc.collect()
    return out


def _sample(model: Any, positive: list[Any], negative: list[Any], family: str) -> torch.Tensor:
    from engine.diffusion.guider import CFGGuider
    from engine.sampling import prepare_noise, sigmas_for

    latent = torch.zeros([1, 16, SIZE // 8, SIZE // 8])
    noise = prepare_noise(latent, SEED, None)
    sigmas = sigmas_for(model.get_model_object("model_sampling"), "simple", STEPS, 1.0, "euler")
    guider = CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(CFG[family])
    return guider.sample(noise, latent, "euler", sigmas, seed=SEED).float()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--families", default="sd3,flux,qwen_image")
    parser.add_argument("--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs")
    options = parser.parse_args()
    families = set(options.families.split(","))
    cases = [case for case in CASES if case[1] in families]
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        files, controlnets, conds = write_files(folder, families)
        write_data(folder / "data.safetensors")
        loom = run_loom(files, controlnets, conds, folder / "data.safetensors", cases)
        args = {
            "comfy_root": str(options.comfy / "ComfyUI"), "files": files, "controlnets": controlnets,
            "conds": conds, "cases": cases, "size": SIZE, "seed": SEED, "steps": STEPS, "cfg": CFG,
            "data": str(folder / "data.safetensors"), "result": str(folder / "comfy.safetensors"),
            "common": COMMON,
        }  # fmt: skip
        command = [str(options.comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
        if options.lock is not None:
            command = ["flock", str(options.lock), *command]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(command, check=False, env=env, cwd=str(options.comfy / "ComfyUI"))
        comfy = load_file(str(folder / "comfy.safetensors"))
    # "control effect": how far the control moves Loom's result from the same run without it.
    print(f"{'case':<20} {'PSNR dB':>8} {'max |diff|':>11} {'control effect':>15}")
    scores = []
    for name, family, *_ in cases:
        if name not in comfy:
            print(f"{name:<20} ComfyUI failed (its traceback is above)")
            continue
        mse = float(((comfy[name] - loom[name]) ** 2).mean())
        span = float(comfy[name].max() - comfy[name].min())
        score = math.inf if mse == 0 else 20 * math.log10(span / math.sqrt(mse))
        scores.append(score)
        diff = float((comfy[name] - loom[name]).abs().max())
        effect = float((loom[name] - loom["plain " + family]).abs().max())
        print(f"{name:<20} {score:>8.1f} {diff:>11.2e} {effect:>15.2e}")
    print(
        f"summary: {sum(s >= 30 for s in scores)}/{len(cases)} cases at PSNR >= 30 dB; "
        f"worst {min(scores, default=math.nan):.1f} dB"
    )


if __name__ == "__main__":
    main()
