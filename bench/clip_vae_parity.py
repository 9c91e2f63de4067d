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

    print(f"{'prompt':42} {'windows':>7} {'SD1 tokens':>10} {'SDXL tokens+ids':>15}")
    for prompt, windows, a, b in rows:
        print(f"{prompt!r:42} {windows:>7} {'same' if a else 'DIFF':>10} {'same' if b else 'DIFF':>15}")
    print(f"\n{'tile':>5} {'overlap':>7} {'max |Loom - ComfyUI|':>22}")
    for tile, overlap, diff in tiled:
        print(f"{tile:>5} {overlap:>7} {diff:>22.3g}")
    same = sum(a and b for _, _, a, b in rows)
    exact = sum(d == 0.0 for *_, d in tiled)
    print(
        f"\n{same}/{len(rows)} prompts tokenize identically (SD1 and SDXL, embeddings included); "
        f"tiled_scale identical in {exact}/{len(tiled)} tilings (ComfyUI side {comfy_s:.1f} s)"
    )


if __name__ == "__main__":
    main()
