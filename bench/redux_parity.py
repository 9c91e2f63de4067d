"""Parity of Loom and a CPU ComfyUI 0.3.64 on Flux Redux: the SigLIP vision encoder's outputs and a
Redux-conditioned Flux run (PSNR and max |difference|).

ComfyUI builds SigLIP from its config at full size (so400m, patch 14, 384 px: 27 layers 1152 wide) and
Flux at its released widths, so the stand-ins here have those sizes with random weights: a SigLIP file in
ComfyUI's `sigclip_vision_patch14_384` layout (fp16, about 0.85 GB), a `flux1-redux-dev` style model
(SigLIP 1152 → 3 × 4096 → 4096) and a shallow full-width Flux.1 dev (one double and one single block, from
bench/families_parity.py). They are written once under `--work` (default /tmp/redux_bench) and reused.

Each engine encodes the same 300×420 image (crops "center" and "none") with its own loaders and nodes,
applies the Redux tokens to the same random prompt with StyleModelApply (multiply at 0.6 and attn_bias at
0.5), and samples Flux (euler / simple, cfg 1, FluxGuidance 3.5). `--lock /tmp/comfy.lock` runs the
ComfyUI part under that flock.

    OMP_NUM_THREADS=1 .venv/bin/python bench/redux_parity.py [--comfy /tmp/comfy] [--lock FILE]

Prints a table (what, PSNR in dB, max |difference|) and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from comfy_client import COMFY_DRIVER_HEAD  # noqa: E402  (bench/comfy_client.py)

import engine  # noqa: E402, F401  (keeps a CUDA-built torchvision importable)

STEPS, SEED, SIZE, GUIDANCE = 4, 42, 64, 3.5
STYLES = [(0.6, "multiply"), (0.5, "attn_bias")]
CROPS = ("center", "none")
LAYERS = (-20, -11, -2)  # the hidden states compared (USO's three)

DRIVER = (
    COMFY_DRIVER_HEAD
    + """import comfy.clip_vision, comfy.sd, comfy.sample
import nodes
from safetensors.torch import load_file, save_file
out = {}
inputs = load_file(args["inputs"])
vision = comfy.clip_vision.load(args["siglip"])
encoded = {}
for crop in args["crops"]:
    o = vision.encode_image(inputs["image"], crop=crop == "center")
    encoded[crop] = o
    out[f"siglip/{crop}/last"] = o["last_hidden_state"].float().contiguous()
    out[f"siglip/{crop}/embeds"] = o["image_embeds"].float().contiguous()
    for layer in args["layers"]:
        out[f"siglip/{crop}/layer{layer}"] = o["all_hidden_states"][:, layer].float().contiguous()
vision = None
style = comfy.sd.load_style_model(args["redux"])
model = comfy.sd.load_diffusion_model(args["flux"])
positive = [[inputs["context"], {"pooled_output": inputs["pooled"], "guidance": args["guidance"]}]]
negative = [[torch.zeros_like(inputs["context"]), {"pooled_output": torch.zeros_like(inputs["pooled"])}]]
for strength, kind in args["styles"]:
    (cond,) = nodes.StyleModelApply().apply_stylemodel(positive, style, encoded["center"], strength, kind)
    out[f"tokens/{strength}/{kind}"] = cond[0][0].float().contiguous()
    latent = torch.zeros([1, 16, args["size"] // 8, args["size"] // 8])
    noise = comfy.sample.prepare_noise(latent, args["seed"])
    samples = comfy.sample.sample(model, noise, args["steps"], 1.0, "euler", "simple", cond, negative, latent,
                                  seed=args["seed"], disable_pbar=True)
    out[f"flux/{strength}/{kind}"] = samples.float().contiguous()
save_file({k: v.clone() for k, v in out.items()}, args["result"])  # embeds and last share memory
"""
)


def write_siglip(path: Path) -> None:
    """so400m/14 at 384 px in ComfyUI's layout, random fp16 weights scaled so activations stay O(1)."""
    config = json.loads((ROOT / "engine/models/clip_vision_configs/siglip_384.json").read_text())
    width, inner, layers = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    generator = torch.Generator().manual_seed(5)

    def rand(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=generator) * scale).half()

    state = {
        "vision_model.embeddings.patch_embedding.weight": rand(width, 3, 14, 14, scale=1 / math.sqrt(588)),
        "vision_model.embeddings.patch_embedding.bias": rand(width, scale=0.02),
        "vision_model.embeddings.position_embedding.weight": rand(729, width, scale=0.2),
        "vision_model.post_layernorm.weight": 1 + rand(width, scale=0.1),
        "vision_model.post_layernorm.bias": rand(width, scale=0.02),
    }
    for i in range(layers):
        p = f"vision_model.encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            state[f"{p}self_attn.{name}.weight"] = rand(width, width, scale=1 / math.sqrt(width))
            state[f"{p}self_attn.{name}.bias"] = rand(width, scale=0.02)
        state[p + "mlp.fc1.weight"] = rand(inner, width, scale=1 / math.sqrt(width))
        state[p + "mlp.fc1.bias"] = rand(inner, scale=0.02)
        state[p + "mlp.fc2.weight"] = rand(width, inner, scale=0.5 / math.sqrt(inner))
        state[p + "mlp.fc2.bias"] = rand(width, scale=0.02)
        for norm in ("layer_norm1", "layer_norm2"):
            state[f"{p}{norm}.weight"] = 1 + rand(width, scale=0.1)
            state[f"{p}{norm}.bias"] = rand(width, scale=0.02)
    save_file(state, str(path))


def write_redux(path: Path) -> None:
    generator = torch.Generator().manual_seed(6)
    up = torch.randn(3 * 4096, 1152, generator=generator) / math.sqrt(1152)
    down = torch.randn(4096, 3 * 4096, generator=generator) / math.sqrt(3 * 4096)
    state = {"redux_up.weight": up, "redux_up.bias": torch.zeros(3 * 4096), "redux_down.weight": down}
    state["redux_down.bias"] = 0.02 * torch.randn(4096, generator=generator)
    save_file({k: v.half() for k, v in state.items()}, str(path))


def write_inputs(path: Path) -> None:
    generator = torch.Generator().manual_seed(8)
    rows = torch.linspace(0, 1, 300).view(300, 1, 1)
    cols = torch.linspace(0, 1, 420).view(1, 420, 1)
    image = torch.cat(
        [rows.expand(300, 420, 1), cols.expand(300, 420, 1), (rows * cols).expand(300, 420, 1)], 2
    )
    image = (image + 0.1 * torch.rand(300, 420, 3, generator=generator)).clamp(0, 1).unsqueeze(0)
    save_file(
        {
            "image": image.contiguous(),
            "context": torch.randn(1, 12, 4096, generator=generator),
            "pooled": torch.randn(1, 768, generator=generator),
        },
        str(path),
    )


def files(work: Path) -> dict[str, str]:
    from bench.families_parity import write_shallow

    work.mkdir(parents=True, exist_ok=True)
    paths = {
        "siglip": work / "sigclip_vision_patch14_384.safetensors",
        "redux": work / "flux1-redux-dev.safetensors",
        "flux": work / "shallow_flux.safetensors",
        "inputs": work / "inputs.safetensors",
    }
    writers = {"siglip": write_siglip, "redux": write_redux, "flux": lambda p: write_shallow("flux", p)}
    writers["inputs"] = write_inputs
    for key, path in paths.items():
        if not path.exists():
            writers[key](path)
    return {k: str(v) for k, v in paths.items()}


def run_loom(paths: dict[str, str]) -> dict[str, torch.Tensor]:
    from engine.diffusion.clip_vision import load_clip_vision
    from engine.diffusion.guider import CFGGuider
    from engine.diffusion.style_model import append_style_tokens, load_style_model
    from engine.models.flow_families import load_diffusion_model
    from engine.sampling import prepare_noise, sigmas_for

    inputs = load_file(paths["inputs"])
    out: dict[str, torch.Tensor] = {}
    vision = load_clip_vision(paths["siglip"])
    encoded = {}
    for crop in CROPS:
        o = encoded[crop] = vision.encode_image(inputs["image"], crop=crop == "center")
        out[f"siglip/{crop}/last"], out[f"siglip/{crop}/embeds"] = o.last_hidden_state, o.image_embeds
        for layer in LAYERS:
            out[f"siglip/{crop}/layer{layer}"] = o.all_hidden_states[:, layer]
    del vision
    style = load_style_model(paths["redux"])
    model = load_diffusion_model(Path(paths["flux"]))
    positive = [[inputs["context"], {"pooled_output": inputs["pooled"], "guidance": GUIDANCE}]]
    negative = [[torch.zeros_like(inputs["context"]), {"pooled_output": torch.zeros_like(inputs["pooled"])}]]
    for strength, kind in STYLES:
        cond = append_style_tokens(positive, style.get_cond(encoded["center"]), strength, kind)
        out[f"tokens/{strength}/{kind}"] = cond[0][0]
        latent = torch.zeros([1, 16, SIZE // 8, SIZE // 8])
        noise = prepare_noise(latent, SEED, None)
        sigmas = sigmas_for(model.get_model_object("model_sampling"), "simple", STEPS, 1.0, "euler")
        guider = CFGGuider(model)
        guider.set_conds(cond, negative)
        guider.set_cfg(1.0)
        out[f"flux/{strength}/{kind}"] = guider.sample(noise, latent, "euler", sigmas, seed=SEED).float()
    return out


def run_comfy(comfy: Path, paths: dict[str, str], result: Path, lock: Path | None) -> dict[str, torch.Tensor]:
    args = {
        "comfy_root": str(comfy / "ComfyUI"), **paths, "crops": CROPS, "layers": LAYERS, "styles": STYLES,
        "size": SIZE, "seed": SEED, "steps": STEPS, "guidance": GUIDANCE, "result": str(result),
    }  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
    if lock is not None:
        command = ["flock", str(lock), *command]
    subprocess.run(command, check=True, env=env, cwd=str(comfy / "ComfyUI"), stdout=subprocess.DEVNULL)
    return load_file(str(result))


def psnr(reference: torch.Tensor, other: torch.Tensor) -> float:
    mse = float(((reference - other) ** 2).mean())
    span = float(reference.max() - reference.min())
    return math.inf if mse == 0 else 20 * math.log10(span / math.sqrt(mse))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"), help="ComfyUI checkout + venv")
    parser.add_argument("--work", type=Path, default=Path("/tmp/redux_bench"), help="stand-in files")
    parser.add_argument("--lock", type=Path, default=None, help="flock(1) file held while ComfyUI runs")
    parser.add_argument("--loom-only", action="store_true", help="(internal) write Loom's results and exit")
    parser.add_argument("--reuse-loom", action="store_true", help="compare Loom's results of the last run")
    options = parser.parse_args()
    torch.set_num_threads(1)
    paths = files(options.work)
    loom_result = options.work / "loom_result.safetensors"
    if options.loom_only:
        save_file({k: v.float().clone() for k, v in run_loom(paths).items()}, str(loom_result))
        return
    # Loom runs in a process of its own, so that its GBs are free again while ComfyUI runs.
    if not (options.reuse_loom and loom_result.exists()):
        subprocess.run([sys.executable, __file__, "--work", str(options.work), "--loom-only"], check=True)
    loom = load_file(str(loom_result))
    comfy = run_comfy(options.comfy, paths, options.work / "comfy_result.safetensors", options.lock)
    print(f"{'what':<32} {'PSNR dB':>8} {'max |diff|':>11}")
    scores: list[float] = []
    for key, value in loom.items():
        reference = comfy[key]
        score = psnr(reference, value)
        scores.append(score)
        print(f"{key:<32} {score:>8.1f} {float((reference - value).abs().max()):>11.2e}")
    passing = sum(s >= 30 for s in scores)
    print(f"summary: {passing}/{len(scores)} outputs at PSNR >= 30 dB; worst {min(scores):.1f} dB")


if __name__ == "__main__":
    main()
