"""Same Lotus-D file, image and graph through a CPU ComfyUI 0.3.64 and Loom: PSNR of the two depth images.

ComfyUI detects Lotus-D only at its released widths (model_channels 320, context 1024), so this writes
once a full-width random-weight Lotus-D UNet (SD2's UNet with a 4-input class embedding, diffusers layout
as Comfy-Org ships lotus-depth-d-v1-1.safetensors, fp16, about 1.7 GB) and takes the SD VAE out of the
bench SD1.5 checkpoint (bench/make_comfy_sd15.py). Each server (started here, one after the other, on
loopback) runs ComfyUI's Lotus depth graph (tests/nodes/lotus_fixtures.py: VAEEncode, LotusConditioning,
BasicScheduler normal 1 step, SetFirstSigma, DisableNoise, euler, VAEDecode, ImageInvert) on the same
64×64 picture, with SetFirstSigma 999 (image_lotus_depth_v1_1) and 10000 (the Lotus subgraphs of
flux_depth_lora_example and sd3.5_large_depth).

ComfyUI 0.3.64 builds Lotus with 8 attention heads a layer (its diffusers-UNet table says num_heads 8);
later ComfyUI builds it with 64-channel heads, as SD2 (which Lotus was trained from) and Loom do. The
`fixed` rows run 0.3.64 with that one later correction applied at start-up (LotusD's unet_extra_config
gets num_head_channels 64); the `as-is` rows run it unchanged, to show what the head count does.
Run the whole bench under the shared lock (it starts ComfyUI):

    flock /tmp/comfy.lock env OMP_NUM_THREADS=1 /work/main/.venv/bin/python bench/lotus_parity.py \
        [--models /tmp/lotus_bench] [--comfy-port 19110] [--loom-port 19111] [--comfy-as-is]

Prints a table (case, PSNR in dB, max |difference|) and a one-line summary; target ≥ 30 dB.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_image, serving, upload_image  # bench/comfy_client.py
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401  (configures the environment before diffusers is imported)
from tests.nodes.lotus_fixtures import LAYOUT_FILES, VAE_FILE, lotus_depth_graph  # noqa: E402

COMFY_SRC = Path("/tmp/comfy/ComfyUI")
COMFY_PYTHON = "/tmp/comfy/venv/bin/python"
SD15 = Path("/tmp/benchmodels/comfy_sd15.safetensors")
IMAGE = "lotus_parity_input.png"
SIGMAS = (999.0, 10000.0)
# ComfyUI's main.py, with (when LOTUS_HEAD_FIX is set) LotusD built with 64-channel heads as later ComfyUI.
_COMFY_LAUNCH = (
    "import os, runpy, sys; sys.argv = ['main.py', *sys.argv[1:]]\n"
    "if os.environ.get('LOTUS_HEAD_FIX'):\n"
    "    import comfy.options; comfy.options.enable_args_parsing()\n"
    "    import comfy.supported_models as m\n"
    "    m.LotusD.unet_extra_config = {**m.LotusD.unet_extra_config, 'num_head_channels': 64}\n"
    "runpy.run_path('main.py', run_name='__main__')\n"
)


def write_models(folder: Path) -> None:
    """diffusion_models/ with a full-width random Lotus-D (diffusers layout, fp16) and vae/ with the bench
    checkpoint's SD VAE; files already there are kept."""
    import torch
    from safetensors.torch import load_file, save_file

    unet_path = folder / "diffusion_models" / LAYOUT_FILES["diffusers"]
    if not unet_path.exists():
        from diffusers import UNet2DConditionModel

        torch.manual_seed(0)
        unet = UNet2DConditionModel(
            block_out_channels=(320, 640, 1280, 1280),
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
            cross_attention_dim=1024,
            attention_head_dim=(5, 10, 20, 20),
            use_linear_projection=True,
            class_embed_type="projection",
            projection_class_embeddings_input_dim=4,
        )
        unet_path.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.half().contiguous() for k, v in unet.state_dict().items()}, str(unet_path))
        del unet
    vae_path = folder / "vae" / VAE_FILE
    if not vae_path.exists():
        state = load_file(str(SD15))
        vae = {
            k.removeprefix("first_stage_model."): v for k, v in state.items() if k.startswith("first_stage")
        }
        vae_path.parent.mkdir(parents=True, exist_ok=True)
        save_file(vae, str(vae_path))


def input_png() -> bytes:
    """A 64×64 picture with depth-like structure: a floor gradient, a near box and a far disc."""
    rows, cols = np.mgrid[0:64, 0:64]
    image = np.stack([40 + 2.5 * rows, 60 + 1.5 * rows, 90 + cols], axis=-1).astype(np.float64)
    image[30:54, 8:30] = (220, 80, 60)
    image[((rows - 18) ** 2 + (cols - 44) ** 2) < 100] = (70, 160, 230)
    buffer = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def server(side: str, port: int, models: Path, work: Path, head_fix: bool = True) -> Iterator[None]:
    """A ComfyUI or Loom server on 127.0.0.1:`port` seeing `models`; stopped with its children."""
    config = work / "extra_model_paths.yaml"
    config.write_text(
        f"lotus:\n    diffusion_models: {models / 'diffusion_models'}\n    vae: {models / 'vae'}\n"
    )
    args = ["--listen", "127.0.0.1", "--port", str(port), "--cpu", "--extra-model-paths-config", str(config)]
    args += ["--output-directory", str(work / f"{side}-out"), "--input-directory", str(work / f"{side}-in")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if side == "comfy":
        command, cwd = [COMFY_PYTHON, "-c", _COMFY_LAUNCH, *args], COMFY_SRC
        env = {**env, "LOTUS_HEAD_FIX": "1" if head_fix else ""}
    else:
        command, cwd = [sys.executable, "main.py", *args], ROOT
    with serving(command, cwd, env, port, work / f"{side}.log"):
        yield


def run_cases(port: int) -> dict[float, np.ndarray | str]:
    """The Lotus graph at each SetFirstSigma value: the saved image, or why there is none."""
    upload_image(port, IMAGE, input_png())
    out: dict[float, np.ndarray | str] = {}
    for sigma in SIGMAS:
        prompt: dict[str, Any] = lotus_depth_graph(IMAGE, sigma=sigma)
        started = time.monotonic()
        out[sigma] = saved_image(port, queue_prompt(port, prompt), timeout=1800)
        print(f"  port {port}: sigma {sigma:g} done in {time.monotonic() - started:.1f} s", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("/tmp/lotus_bench"))
    parser.add_argument("--comfy-port", type=int, default=19110)
    parser.add_argument("--loom-port", type=int, default=19111)
    parser.add_argument("--comfy-as-is", action="store_true", help="also run ComfyUI 0.3.64 unchanged")
    args = parser.parse_args()
    write_models(args.models)
    work = args.models / "work"
    for sub in ("comfy-in", "loom-in", "comfy-out", "loom-out"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[float, np.ndarray | str]] = {}
    with server("loom", args.loom_port, args.models, work):
        results["loom"] = run_cases(args.loom_port)
    with server("comfy", args.comfy_port, args.models, work, head_fix=True):
        results["comfy fixed"] = run_cases(args.comfy_port)
    if args.comfy_as_is:
        with server("comfy", args.comfy_port, args.models, work, head_fix=False):
            results["comfy as-is"] = run_cases(args.comfy_port)
    print(f"\n{'case':<34} {'PSNR dB':>9} {'max |diff|':>11}")
    scores = []
    for name in [k for k in results if k != "loom"]:
        for sigma in SIGMAS:
            loom, comfy = results["loom"][sigma], results[name][sigma]
            label = f"loom vs {name}, sigma {sigma:g}"
            if isinstance(loom, str) or isinstance(comfy, str):
                print(f"{label:<34} failed: loom {loom if isinstance(loom, str) else 'ok'}, "
                      f"comfy {comfy if isinstance(comfy, str) else 'ok'}")  # fmt: skip
                continue
            score, worst = psnr(loom, comfy), int(np.abs(loom.astype(int) - comfy.astype(int)).max())
            if name == "comfy fixed":
                scores.append(score)
            print(f"{label:<34} {score:>9.2f} {worst:>11}")
    if scores:
        print(
            f"\nLotus-D depth graph, Loom vs ComfyUI 0.3.64 (64-channel heads): min PSNR {min(scores):.2f} dB"
        )
    else:
        print("\nno comparable images")


if __name__ == "__main__":
    main()
