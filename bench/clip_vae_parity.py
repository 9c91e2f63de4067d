"""CLIP tokenization and tiled processing side by side with ComfyUI's own code.

Runs ComfyUI's `comfy.sd1_clip`/`comfy.sdxl_clip` tokenizers and `comfy.utils.tiled_scale` in ComfyUI's
venv (a CPU ComfyUI set up from its source, see shared/tools/comfyui) and Loom's in this one, on the same
prompts, embedding files and tensors, and compares the results exactly.

    python bench/clip_vae_parity.py [--comfy /tmp/comfy/ComfyUI] [--python /tmp/comfy/venv/bin/python]
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROMPTS = [
    "a red circle",
    "",
    "a (red:1.3) ((circle))",
    "x, " * 60,
    "a (red) circle, " * 20,
    "unbalanced ) paren ( here",
    "(a:1.2 (b) c:0.5) \\(literal\\) [x]",
    "Hello WORLD 123 café 日本 😀\nnew line",
    "((((deep))))",
    "(a:bad) (:1.5) ()",
    "a embedding:style cat",
    "embedding:style, a dog, embedding:xl",
    "(embedding:style:1.2) cat",
    "a embedding:missing cat",
    "embedding:sub/deep " + "word " * 80,
]


def comfy_script(comfy: str, work: str) -> str:
    return f"""
import pickle, sys
sys.argv = ["x", "--cpu"]
sys.path.insert(0, {comfy!r})
import comfy.options
comfy.options.enable_args_parsing()
import torch
from comfy import sd1_clip, sdxl_clip
import comfy.utils
data = pickle.load(open({work!r} + "/in.pkl", "rb"))
emb = data["embeddings"]
sd1 = sd1_clip.SD1Tokenizer(embedding_directory=[emb])
sd1.clip_l.embedding_size = 64
sdxl = sdxl_clip.SDXLTokenizer(embedding_directory=[emb])
sdxl.clip_l.embedding_size = 64
sdxl.clip_g.embedding_size = 64
out = {{"sd1": [sd1.tokenize_with_weights(p) for p in data["prompts"]],
        "sdxl": [sdxl.tokenize_with_weights(p, return_word_ids=True) for p in data["prompts"]]}}
weight = data["weight"]
fn = lambda x: torch.nn.functional.conv_transpose2d(x, weight, stride=2)
out["tiled"] = [comfy.utils.tiled_scale(data["samples"], fn, t, t, o, upscale_amount=2, out_channels=3)
                for t, o in data["tiles"]]
pickle.dump(out, open({work!r} + "/out.pkl", "wb"))
"""


COND_PROMPTS = [
    "a red circle",
    "",
    "a (red:1.3) ((circle)), " * 6,
    "photo of embedding:big, (embedding:big:0.8) in the rain",
]


def cond_script(comfy: str, work: str) -> str:
    """ComfyUI loads the same CLIP-L file and encodes the same prompts (default layer and clip skip).
    `--fp32-text-enc`: by default ComfyUI keeps text encoders in fp16 even on the CPU, Loom in fp32."""
    return f"""
import pickle, sys
sys.argv = ["x", "--cpu", "--fp32-text-enc"]
sys.path.insert(0, {comfy!r})
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd
clip = comfy.sd.load_clip([{work!r} + "/clip_l.safetensors"], embedding_directory=[{work!r} + "/embeddings"])
out = []
for skip in (None, -2):
    c = clip.clone()
    if skip is not None:
        c.clip_layer(skip)
    for p in pickle.load(open({work!r} + "/cond_in.pkl", "rb")):
        out.append(c.encode_from_tokens(c.tokenize(p), return_pooled=True))
pickle.dump(out, open({work!r} + "/cond_out.pkl", "wb"))
"""


def write_clip_l(folder: Path) -> None:
    """A full-size CLIP-L text encoder (SD1.x's) with random weights, as ComfyUI saves one."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=768,
        intermediate_size=3072,
        num_hidden_layers=12,
        num_attention_heads=12,
        max_position_embeddings=77,
        projection_dim=768,
        hidden_act="quick_gelu",
        eos_token_id=49407,
        bos_token_id=49406,
        pad_token_id=1,
    )
    model = CLIPTextModel(config).eval()
    state = {}
    for key, value in model.state_dict().items():
        name = key if key.startswith("text_model.") else "text_model." + key
        state[name] = value.contiguous()
    save_file(state, str(folder / "clip_l.safetensors"))
    generator = torch.Generator().manual_seed(2)
    save_file(
        {"emb_params": torch.randn(2, 768, generator=generator) * 0.02},
        str(folder / "embeddings" / "big.safetensors"),
    )


def conditioning_parity(args: argparse.Namespace, work: Path) -> list[tuple[str, str, float, float]]:
    import torch

    from engine import comfy_compat

    (work / "embeddings").mkdir(exist_ok=True)
    write_clip_l(work)
    with open(work / "cond_in.pkl", "wb") as handle:
        pickle.dump(COND_PROMPTS, handle)
    subprocess.run(
        [args.python, "-c", cond_script(args.comfy, str(work))],
        check=True,
        cwd=args.comfy,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    with open(work / "cond_out.pkl", "rb") as handle:
        theirs = pickle.load(handle)
    comfy_compat.install()
    import comfy.sd  # Loom's adapter

    clip = comfy.sd.load_clip(
        [str(work / "clip_l.safetensors")], embedding_directory=[str(work / "embeddings")]
    )
    rows = []
    index = 0
    for skip in (None, -2):
        c = clip.clone()
        if skip is not None:
            c.clip_layer(skip)
        for prompt in COND_PROMPTS:
            cond, pooled = c.encode_from_tokens(c.tokenize(prompt), return_pooled=True)
            ref_cond, ref_pooled = theirs[index]
            index += 1
            same_shape = cond.shape == ref_cond.shape
            diff = float((cond - ref_cond).abs().max()) if same_shape else float("inf")
            pooled_diff = (
                float((pooled - ref_pooled).abs().max()) if pooled.shape == ref_pooled.shape else float("inf")
            )
            rows.append((prompt[:34], "default" if skip is None else f"layer {skip}", diff, pooled_diff))
    del torch
    return rows


def vae_script(comfy: str, work: str) -> str:
    """ComfyUI builds a VAE from the same original-layout weights and decodes the same latents."""
    return f"""
import pickle, sys
sys.argv = ["x", "--cpu"]
sys.path.insert(0, {comfy!r})
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd, comfy.utils
vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file({work!r} + "/vae.safetensors"))
data = pickle.load(open({work!r} + "/vae_in.pkl", "rb"))
out = {{"decode": vae.decode(data["latent"]), "tiled": vae.decode_tiled(data["latent"], 16, 16, 4),
        "encode": vae.encode(data["image"])}}
pickle.dump(out, open({work!r} + "/vae_out.pkl", "wb"))
"""


def vae_parity(args: argparse.Namespace, work: Path) -> list[tuple[str, float]]:
    """A full-size SD VAE with random weights: decode, tiled decode and encode on both sides."""
    import torch
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from engine.models.keymap import vae_to_original

    torch.manual_seed(0)
    model = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=2,
        latent_channels=4,
    ).eval()
    state = {k: v.contiguous() for k, v in vae_to_original(model.state_dict(), model.config).items()}
    save_file(state, str(work / "vae.safetensors"))
    generator = torch.Generator().manual_seed(3)
    data = {
        "latent": torch.randn(1, 4, 32, 32, generator=generator),
        "image": torch.rand(1, 64, 72, 3, generator=generator),
    }
    with open(work / "vae_in.pkl", "wb") as handle:
        pickle.dump(data, handle)
    subprocess.run(
        [args.python, "-c", vae_script(args.comfy, str(work))],
        check=True,
        cwd=args.comfy,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    with open(work / "vae_out.pkl", "rb") as handle:
        theirs = pickle.load(handle)
    import comfy.sd  # Loom's adapter (installed by conditioning_parity)

    vae = comfy.sd.VAE(sd=dict(state))
    ours = {
        "decode": vae.decode(data["latent"]),
        "tiled": vae.decode_tiled(data["latent"], 16, 16, 4),
        "encode": vae.encode(data["image"]),
    }
    return [(name, float((ours[name] - theirs[name]).abs().max())) for name in ("decode", "tiled", "encode")]


def plain(value: Any) -> Any:
    """Tokens with tensors replaced by their values, for exact comparison."""
    import torch

    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return ["tensor", value.tolist()]
    return value


def write_embeddings(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(0)
    save_file({"emb_params": torch.randn(2, 64, generator=generator)}, str(folder / "style.safetensors"))
    save_file(
        {
            "clip_l": torch.randn(3, 64, generator=generator),
            "clip_g": torch.randn(3, 64, generator=generator),
        },
        str(folder / "xl.safetensors"),
    )
    (folder / "sub").mkdir()
    torch.save(
        {"string_to_param": {"*": torch.randn(1, 64, generator=generator)}}, folder / "sub" / "deep.pt"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--comfy", default="/tmp/comfy/ComfyUI")
    parser.add_argument("--python", default="/tmp/comfy/venv/bin/python")
    args = parser.parse_args()

    import torch

    from engine.diffusion.tiling import tiled_scale
    from engine.diffusion.tokens import ClipTokenizer

    with tempfile.TemporaryDirectory() as work:
        emb = Path(work) / "embeddings"
        emb.mkdir()
        write_embeddings(emb)
        generator = torch.Generator().manual_seed(1)
        samples = torch.randn(2, 4, 20, 28, generator=generator)
        weight = torch.randn(4, 3, 2, 2, generator=generator)
        tiles = [(8, 2), (12, 4), (16, 0), (64, 8)]
        with open(Path(work) / "in.pkl", "wb") as handle:
            pickle.dump(
                {
                    "prompts": PROMPTS,
                    "embeddings": str(emb),
                    "samples": samples,
                    "weight": weight,
                    "tiles": tiles,
                },
                handle,
            )
        started = time.perf_counter()
        subprocess.run(
            [args.python, "-c", comfy_script(args.comfy, work)],
            check=True,
            cwd=args.comfy,
            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
        )
        comfy_s = time.perf_counter() - started
        with open(Path(work) / "out.pkl", "rb") as handle:
            theirs = pickle.load(handle)

        sd1 = ClipTokenizer("sd1", [64], [str(emb)])
        sdxl = ClipTokenizer("sdxl", [64, 64], [str(emb)])
        rows = []
        for i, prompt in enumerate(PROMPTS):
            same_sd1 = plain(sd1.tokenize_with_weights(prompt)) == plain(theirs["sd1"][i])
            ours_xl = sdxl.tokenize_with_weights(prompt, return_word_ids=True)
            same_xl = plain(ours_xl) == plain(theirs["sdxl"][i]) and list(ours_xl) == list(theirs["sdxl"][i])
            windows = len(theirs["sd1"][i]["l"])
            rows.append((prompt.replace("\n", "\\n")[:40], windows, same_sd1, same_xl))
        fn = lambda x: torch.nn.functional.conv_transpose2d(x, weight, stride=2)  # noqa: E731
        tiled = []
        for (tile, overlap), reference in zip(tiles, theirs["tiled"], strict=True):
            ours = tiled_scale(samples, fn, tile, tile, overlap, upscale_amount=2, out_channels=3)
            tiled.append((tile, overlap, float((ours - reference).abs().max())))
        cond_rows = conditioning_parity(args, Path(work))
        vae_rows = vae_parity(args, Path(work))

    print(f"{'prompt':42} {'windows':>7} {'SD1 tokens':>10} {'SDXL tokens+ids':>15}")
    for prompt, windows, a, b in rows:
        print(f"{prompt!r:42} {windows:>7} {'same' if a else 'DIFF':>10} {'same' if b else 'DIFF':>15}")
    print(f"\n{'tile':>5} {'overlap':>7} {'max |Loom - ComfyUI|':>22}")
    for tile, overlap, diff in tiled:
        print(f"{tile:>5} {overlap:>7} {diff:>22.3g}")
    header = "CLIP-L conditioning (full size, random weights)"
    print(f"\n{header:50} {'layer':>9} {'max |cond diff|':>16} {'max |pooled diff|':>18}")
    for prompt, layer, diff, pooled_diff in cond_rows:
        print(f"{prompt!r:50} {layer:>9} {diff:>16.3g} {pooled_diff:>18.3g}")
    worst = max(max(d, p) for *_, d, p in cond_rows)
    print(f"\n{'SD VAE (full size, random weights)':36} {'max |Loom - ComfyUI|':>22}")
    for name, diff in vae_rows:
        print(f"{name:36} {diff:>22.3g}")
    same = sum(a and b for _, _, a, b in rows)
    exact = sum(d == 0.0 for *_, d in tiled)
    print(
        f"\n{same}/{len(rows)} prompts tokenize identically (SD1 and SDXL, embeddings included); "
        f"tiled_scale identical in {exact}/{len(tiled)} tilings; CLIP-L conditioning within {worst:.2g} of "
        f"ComfyUI's in {len(cond_rows)} encodings; VAE decode/tiled decode/encode within "
        f"{max(d for _, d in vae_rows):.2g} (ComfyUI's tokenizers and tiling: {comfy_s:.1f} s)"
    )


if __name__ == "__main__":
    main()
