"""Do the files Loom's save nodes write load in ComfyUI, with the merged weights?

Runs, in Loom, CheckpointLoaderSimple on a real-size SD1.5-layout checkpoint (ComfyUI detects SD1.5 only
at full size; see bench/make_comfy_sd15.py), ModelMergeAdd(model, model) and CLIPMergeAdd(clip, clip)
(every merged weight doubled), then CheckpointSave, ModelSave, CLIPSave and VAESave; then, in ComfyUI's
venv, loads each file the way ComfyUI's own loaders do (load_checkpoint_guess_config, load_diffusion_model,
load_clip, VAE) and compares its weights with ComfyUI's load of the original file: UNet and text encoder
×2, VAE ×1. Prints one line per file and a summary. Run it under the shared lock:

    flock /tmp/comfy.lock python bench/saved_models_in_comfy.py [--checkpoint PATH]

(default PATH: /tmp/benchmodels/comfy_sd15.safetensors)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COMFY_SIDE = r"""
import sys, torch
sys.argv = ["bench", "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.sd, comfy.utils

src, out = {src!r}, {out!r}
load = comfy.sd.load_checkpoint_guess_config
o_model, o_clip, o_vae, _ = load(src, output_vae=True, output_clip=True)
# Buffers and weights no merge touches (ComfyUI fills CLIP-L's text_projection with its own default).
UNMERGED = ("position_ids", "logit_scale", "text_projection.weight")

def compare(name, before, after, factor):
    shared = [k for k in before if k in after and not k.endswith(UNMERGED)]
    bad = [
        k for k in shared
        if not torch.allclose(after[k].float(), before[k].float() * factor, rtol=1e-3, atol=1e-3)
    ]
    print(f"{{name}}: {{len(shared)}} weights compared, {{len(bad)}} differ {{bad[:2]}}")
    return not bad and bool(shared)

def unet(model):
    return model.model.diffusion_model.state_dict()

saved = out + "/checkpoints/ComfyUI_00001_.safetensors"
s_model, s_clip, s_vae, _ = load(saved, output_vae=True, output_clip=True)
kind = type(s_model.model).__name__
print("CheckpointSave file detected by ComfyUI as", kind, s_model.model.model_type.name)
ok = [
    compare("CheckpointSave UNet (x2)", unet(o_model), unet(s_model), 2.0),
    compare("CheckpointSave CLIP (x2)", o_clip.get_sd(), s_clip.get_sd(), 2.0),
    compare("CheckpointSave VAE", o_vae.get_sd(), s_vae.get_sd(), 1.0),
]
alone = comfy.sd.load_diffusion_model(out + "/diffusion_models/ComfyUI_00001_.safetensors")
ok.append(compare("ModelSave via load_diffusion_model (x2)", unet(o_model), unet(alone), 2.0))
clip = comfy.sd.load_clip([out + "/clip/ComfyUI_clip_l_00001_.safetensors"])
ok.append(compare("CLIPSave via load_clip (x2)", o_clip.get_sd(), clip.get_sd(), 2.0))
vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(out + "/vae/ComfyUI_vae_00001_.safetensors"))
ok.append(compare("VAESave via VAE", o_vae.get_sd(), vae.get_sd(), 1.0))
print(f"summary: {{sum(ok)}} of {{len(ok)}} files load in ComfyUI with the expected weights")
"""


def save_in_loom(checkpoint: Path, work: Path) -> None:
    from engine import folders
    from engine.executor import Executor
    from engine.folders import Folders
    from engine.graph import validate_prompt
    from nodes import builtin_registry

    configured = Folders.under(work)
    for path in (configured.output, configured.input, configured.temp):
        path.mkdir(parents=True, exist_ok=True)
    configured.models["checkpoints"] = [checkpoint.parent]
    folders.configure(configured)
    prompt = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": checkpoint.name}},
        "2": {"class_type": "ModelMergeAdd", "inputs": {"model1": ["1", 0], "model2": ["1", 0]}},
        "3": {"class_type": "CLIPMergeAdd", "inputs": {"clip1": ["1", 1], "clip2": ["1", 1]}},
        "4": {
            "class_type": "CheckpointSave",
            "inputs": {
                "model": ["2", 0],
                "clip": ["3", 0],
                "vae": ["1", 2],
                "filename_prefix": "checkpoints/ComfyUI",
            },
        },
        "5": {
            "class_type": "ModelSave",
            "inputs": {"model": ["2", 0], "filename_prefix": "diffusion_models/ComfyUI"},
        },
        "6": {"class_type": "CLIPSave", "inputs": {"clip": ["3", 0], "filename_prefix": "clip/ComfyUI"}},
        "7": {"class_type": "VAESave", "inputs": {"vae": ["1", 2], "filename_prefix": "vae/ComfyUI_vae"}},
    }
    executor = Executor(builtin_registry())
    checked = validate_prompt(executor.registry, prompt)
    if not checked.ok:
        raise SystemExit(f"prompt rejected: {checked.node_errors}")
    result = executor.execute(checked.prompt, "bench", checked.outputs)
    if result.status != "success":
        raise SystemExit(f"Loom failed: {result.error}")
    for path in sorted(configured.output.rglob("*.safetensors")):
        print(f"Loom wrote {path.relative_to(configured.output)} ({path.stat().st_size / 1e6:.0f} MB)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("/tmp/benchmodels/comfy_sd15.safetensors"))
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom_saved_models_") as tmp:
        work = Path(tmp)
        save_in_loom(args.checkpoint.resolve(), work)
        script = COMFY_SIDE.format(src=str(args.checkpoint.resolve()), out=str(work / "output"))
        python = args.comfy / "venv" / "bin" / "python"
        subprocess.run([str(python), "-c", script], cwd=args.comfy / "ComfyUI", check=True)


if __name__ == "__main__":
    main()
