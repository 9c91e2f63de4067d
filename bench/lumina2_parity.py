"""Same-seed parity of Loom and a CPU ComfyUI 0.3.64 on Lumina Image 2.0: ComfyUI_examples' lumina2 basic
workflow (CheckpointLoaderSimple on lumina_2.safetensors, the system prompt typed before the prompt,
ModelSamplingAuraFlow shift 6, KSampler) and CLIPTextEncodeLumina2 + RenormCFG on the same checkpoint,
compared as saved PNGs (PSNR and max |difference|).

ComfyUI 0.3.64 builds Lumina 2's NextDiT at its released widths whatever the file holds
(`comfy/model_detection.py`: 2304 wide, 24 heads over 8 key/value heads, 2 refiner blocks each), its VAE
at the SD/Flux VAE widths, and Gemma 2 2B from a fixed config (26 layers, 2304 wide, 256,000 tokens:
10 GB in fp32). So the stand-in checkpoint written here has a full-width NextDiT with one main layer
(about 0.44 B parameters, bf16), a full-width Flux-layout VAE (bf16), and a small Gemma 2 (3 layers, 64
wide, 8 heads of 8 channels over 4 key/value heads, fp32) with a small sentencepiece model embedded as
`text_encoders.spiece_model`; ComfyUI is started with its Gemma2_2B config set to those widths
(`_COMFY_LAUNCH`), which changes nothing else of its code path. Both engines run as servers on
127.0.0.1 and read the same file; `--lock /tmp/comfy.lock` holds that flock while ComfyUI runs.

    OMP_NUM_THREADS=1 .venv/bin/python bench/lumina2_parity.py [--models /tmp/lumina2_bench] [--lock FILE]

Prints a table (case, PSNR in dB, max |difference|) and a one-line summary.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401  (keeps a CUDA-built torchvision importable)
from bench.comfy_client import psnr, queue_prompt, saved_image, serving  # noqa: E402

COMFY_SRC = Path("/tmp/comfy/ComfyUI")
COMFY_PYTHON = "/tmp/comfy/venv/bin/python"
CHECKPOINT = "lumina_2_parity.safetensors"
# The small Gemma 2 both engines build (ComfyUI: its Gemma2_2B_Config fields and head_dim).
TINY_GEMMA = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 3,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
}
GEMMA_HEAD_DIM = 8
_COMFY_LAUNCH = (
    "import json, os, runpy, sys; sys.argv = ['main.py', *sys.argv[1:]]\n"
    "import comfy.options; comfy.options.enable_args_parsing()\n"
    "import comfy.text_encoders.llama as llama\n"
    "tiny = json.loads(os.environ['LUMINA2_TINY_GEMMA'])\n"
    "llama.Gemma2_2B_Config.head_dim = tiny.pop('head_dim')\n"
    "_init = llama.Gemma2_2B.__init__\n"
    "def _tiny(self, config_dict, dtype, device, operations):\n"
    "    _init(self, {**config_dict, **tiny}, dtype, device, operations)\n"
    "llama.Gemma2_2B.__init__ = _tiny\n"
    "runpy.run_path('main.py', run_name='__main__')\n"
)
# (name, sampler, scheduler, steps, use CLIPTextEncodeLumina2 + RenormCFG)
CASES = [
    ("example res_multistep/simple", "res_multistep", "simple", 4, False),
    ("example euler/normal", "euler", "normal", 4, False),
    ("Lumina2 node + RenormCFG, dpmpp_2m", "dpmpp_2m", "simple", 4, True),
]


def write_models(folder: Path) -> None:
    """checkpoints/`CHECKPOINT` (kept when present): NextDiT, Gemma 2 with its tokenizer, Flux-layout VAE."""
    path = folder / "checkpoints" / CHECKPOINT
    if path.exists():
        return
    from diffusers import AutoencoderKL, Lumina2Transformer2DModel
    from safetensors.torch import save_file
    from transformers import Gemma2Config, Gemma2Model

    from tests.nodes.flow_fixtures import vae_file_state
    from tests.nodes.lumina2_fixtures import gemma_file_state, lumina2_to_comfy, sentencepiece_proto

    torch.manual_seed(0)
    proto = sentencepiece_proto()
    import sentencepiece

    vocab = sentencepiece.SentencePieceProcessor(model_proto=proto).get_piece_size()
    layers = TINY_GEMMA["num_hidden_layers"]
    gemma = Gemma2Model(
        Gemma2Config(
            **TINY_GEMMA,
            vocab_size=vocab,
            head_dim=GEMMA_HEAD_DIM,
            query_pre_attn_scalar=GEMMA_HEAD_DIM,
            attn_logit_softcapping=None,
            layer_types=["full_attention"] * layers,
        )
    )
    with torch.no_grad():
        for p in gemma.parameters():
            p.normal_(0, 0.2)
    transformer = Lumina2Transformer2DModel(
        hidden_size=2304,
        num_layers=1,
        num_refiner_layers=2,
        num_attention_heads=24,
        num_kv_heads=8,
        multiple_of=256,
        axes_dim_rope=(32, 32, 32),
        cap_feat_dim=TINY_GEMMA["hidden_size"],
        in_channels=16,
    )
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            p.normal_(0, _init_std(name))
            if p.ndim == 1 and ("norm" in name or "caption_embedder.0" in name):
                p.add_(1.0)  # RMSNorm scales near 1, so every block (and the caption) counts
    vae = AutoencoderKL(
        latent_channels=16,
        block_out_channels=[128, 256, 512, 512],
        layers_per_block=2,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        use_quant_conv=False,
        use_post_quant_conv=False,
    )
    state: dict[str, torch.Tensor] = {}
    for key, value in lumina2_to_comfy(transformer.state_dict()).items():
        state["model.diffusion_model." + key] = value.to(torch.bfloat16).contiguous()
    for key, value in gemma_file_state(gemma, proto).items():
        name = (
            "text_encoders.spiece_model"
            if key == "spiece_model"
            else "text_encoders.gemma2_2b.transformer." + key
        )
        state[name] = value.contiguous()  # fp32: both engines then encode in fp32
    for key, value in vae_file_state(vae).items():
        state["vae." + key] = value.to(torch.bfloat16).contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))


def _init_std(name: str) -> float:
    """Random weights under which the time and the caption move the prediction (with 0.02 everywhere the
    gates stay near 0 and the output hardly depends on either)."""
    if name.startswith("time_caption_embed."):
        return 0.1
    if ".norm1.linear." in name or "norm_out.linear_1." in name:
        return 0.03
    return 0.02


def workflow(case: tuple[str, str, str, int, bool], seed: int = 42) -> dict[str, Any]:
    from tests.nodes.lumina2_fixtures import checkpoint_workflow

    _, sampler, scheduler, steps, lumina_node = case
    prompt = checkpoint_workflow(seed, steps, checkpoint=CHECKPOINT, sampler=(sampler, scheduler), height=64)
    if lumina_node:
        prompt["3"] = {
            "class_type": "CLIPTextEncodeLumina2",
            "inputs": {"system_prompt": "alignment", "user_prompt": "a (red:1.3) circle", "clip": ["1", 1]},
        }
        prompt["9"] = {
            "class_type": "RenormCFG",
            "inputs": {"model": ["2", 0], "cfg_trunc": 0.8, "renorm_cfg": 1.0},
        }
        prompt["6"]["inputs"]["model"] = ["9", 0]
    return prompt


@contextlib.contextmanager
def locked(lock: Path | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _vocab(models: Path) -> int:
    """The stand-in Gemma's vocabulary (its sentencepiece model's size), from the checkpoint's header."""
    from safetensors import safe_open

    with safe_open(str(models / "checkpoints" / CHECKPOINT), "pt") as handle:
        key = "text_encoders.gemma2_2b.transformer.model.embed_tokens.weight"
        return int(handle.get_slice(key).get_shape()[0])


@contextlib.contextmanager
def server(side: str, port: int, models: Path, work: Path) -> Iterator[None]:
    """A ComfyUI or Loom server on 127.0.0.1:`port` seeing `models`; stopped with its children."""
    config = work / "extra_model_paths.yaml"
    config.write_text(f"lumina2:\n    checkpoints: {models / 'checkpoints'}\n")
    args = ["--listen", "127.0.0.1", "--port", str(port), "--cpu", "--extra-model-paths-config", str(config)]
    args += ["--output-directory", str(work / f"{side}-out"), "--input-directory", str(work / f"{side}-in")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    if side == "comfy":
        tiny = {**TINY_GEMMA, "vocab_size": _vocab(models), "head_dim": GEMMA_HEAD_DIM}
        command, cwd = [COMFY_PYTHON, "-c", _COMFY_LAUNCH, *args], COMFY_SRC
        env["LUMINA2_TINY_GEMMA"] = json.dumps(tiny)
    else:
        command, cwd = [sys.executable, "main.py", *args], ROOT
    with serving(command, cwd, env, port, work / f"{side}.log"):
        yield


def run_cases(port: int) -> dict[str, np.ndarray | str]:
    out: dict[str, np.ndarray | str] = {}
    for case in CASES:
        started = time.monotonic()
        out[case[0]] = saved_image(port, queue_prompt(port, workflow(case)), timeout=1800)
        print(f"  port {port}: {case[0]} in {time.monotonic() - started:.1f} s", flush=True)
    return out


def _print_between_cases(images: dict[str, np.ndarray | str]) -> None:
    """How far apart Loom's own images of different cases are: what a PSNR between engines is measured
    against (a wrong step would look like another case)."""
    made = [image for image in images.values() if not isinstance(image, str)]
    pairs = [psnr(a, b) for i, a in enumerate(made) for b in made[i + 1 :]]
    if pairs:
        print(f"{'(Loom, between cases: max)':<38} {max(pairs):>9.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=Path("/tmp/lumina2_bench"))
    parser.add_argument("--comfy-port", type=int, default=19120)
    parser.add_argument("--loom-port", type=int, default=19121)
    parser.add_argument("--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs")
    args = parser.parse_args()
    write_models(args.models)
    work = args.models / "work"
    for sub in ("comfy-in", "loom-in", "comfy-out", "loom-out"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    with server("loom", args.loom_port, args.models, work):
        loom = run_cases(args.loom_port)
    with locked(args.lock), server("comfy", args.comfy_port, args.models, work):
        comfy = run_cases(args.comfy_port)
    print(f"\n{'case':<38} {'PSNR dB':>9} {'max |diff|':>11}")
    _print_between_cases(loom)
    scores = []
    for name, _, _, _, _ in CASES:
        a, b = loom[name], comfy[name]
        if isinstance(a, str) or isinstance(b, str):
            print(f"{name:<38} failed: loom {a if isinstance(a, str) else 'ok'}, "
                  f"comfy {b if isinstance(b, str) else 'ok'}")  # fmt: skip
            continue
        score, worst = psnr(a, b), int(np.abs(a.astype(int) - b.astype(int)).max())
        scores.append(score)
        print(f"{name:<38} {score:>9.2f} {worst:>11}")
    if len(scores) == len(CASES):
        summary = f"min PSNR {min(scores):.2f} dB over {len(scores)} cases"
        print(f"\nLumina Image 2.0, Loom vs ComfyUI 0.3.64: {summary}")
    else:
        print(f"\n{len(CASES) - len(scores)} of {len(CASES)} cases failed")


if __name__ == "__main__":
    main()
