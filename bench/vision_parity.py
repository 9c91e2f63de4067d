"""Image-prompt models, same files and inputs through ComfyUI's modules and Loom's: max |Δ| of each output.

Writes random-weight files in the sizes ComfyUI detects (a CLIP-ViT-L/14
in transformers' layout and the same weights in open_clip's `visual.*` layout, a T2I style model of
the released shape) and a small GLIGEN in ComfyUI's layout, then computes in a ComfyUI venv (its
`comfy.clip_vision`, `comfy.sd.load_style_model`, `comfy.gligen`, `comfy.model_base.unclip_adm`) and
in Loom, and compares: CLIPVisionEncode's four outputs (crop center and none), the style tokens, the
unCLIP ADM vector of one image and of two (SD2.1 unCLIP-H augmentor; the merge step's noise is
ComfyUI's global generator, so only the single-image vector is compared), and GLIGEN's grounding
tokens and one fuser's output.

    OMP_NUM_THREADS=1 flock /tmp/comfy.lock .venv/bin/python bench/vision_parity.py
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402,F401  (torchvision beside a CPU torch, before transformers)
from tests.nodes.vision_fixtures import gligen_layout, hf_layout, open_clip_layout, style_layout, write  # noqa: E402

COMFY_SIDE = textwrap.dedent(
    """
    import sys, torch
    sys.path.insert(0, sys.argv[1])
    sys.path.append("/work/shared/tools/comfyui")
    try:
        import torchvision_cpu_shim
    except ImportError:
        pass
    from comfy.cli_args import args
    args.cpu = True
    import comfy.clip_vision, comfy.sd, comfy.gligen, comfy.utils, comfy.model_base
    from comfy.ldm.modules.encoders.noise_aug_modules import CLIPEmbeddingNoiseAugmentation
    from safetensors.torch import load_file, save_file
    work = sys.argv[2]
    inputs = load_file(work + "/inputs.safetensors")
    out = {}
    for layout in ("hf", "open_clip"):
        model = comfy.clip_vision.load(work + f"/vit_l_{layout}.safetensors")
        for crop in (True, False):
            o = model.encode_image(inputs["image"], crop=crop)
            for key in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
                out[f"{layout}_{crop}_{key}"] = o[key].float().contiguous()
    style = comfy.sd.load_style_model(work + "/style.safetensors")
    class Vision: pass
    v = Vision(); v.last_hidden_state = inputs["style_in"]
    out["style"] = style.get_cond(v).float().contiguous()
    augmentor = CLIPEmbeddingNoiseAugmentation(noise_schedule_config={"timesteps": 1000,
        "beta_schedule": "squaredcos_cap_v2"}, timestep_dim=1024)
    class Encoded: pass
    e = Encoded(); e.image_embeds = inputs["embeds"][:1]
    cond = [{"clip_vision_output": e, "strength": 0.8, "noise_augmentation": 0.3}]
    out["adm"] = comfy.model_base.unclip_adm(cond, "cpu", augmentor, 0.05, 40 - 10).contiguous()
    g = comfy.gligen.load_gligen(comfy.utils.load_torch_file(work + "/gligen.safetensors"))
    params = [(inputs["phrase"], 4, 2, 1, 3), (inputs["phrase"] * 0.5, 2, 6, 5, 0)]
    patch = g.set_position((1, 4, 8, 8), params, "cpu")
    out["fuser0"] = patch(inputs["x0"], {"transformer_index": 0}).contiguous()
    out["fuser1"] = patch(inputs["x1"], {"transformer_index": 1}).contiguous()
    save_file(out, work + "/comfy.safetensors")
    """
)


def loom_side(work: Path, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    from engine.diffusion.clip_vision import load_clip_vision
    from engine.diffusion.gligen import load_gligen_file, with_gligen_patch
    from engine.diffusion.style_model import load_style_model
    from engine.diffusion.unclip import CLIPEmbeddingNoiseAugmentation, unclip_adm

    out: dict[str, torch.Tensor] = {}
    for layout in ("hf", "open_clip"):
        model = load_clip_vision(work / f"vit_l_{layout}.safetensors")
        for crop in (True, False):
            o = model.encode_image(inputs["image"], crop=crop)
            for key in ("image_embeds", "last_hidden_state", "penultimate_hidden_states"):
                out[f"{layout}_{crop}_{key}"] = o[key]

    class Vision:
        last_hidden_state = inputs["style_in"]

    out["style"] = load_style_model(work / "style.safetensors").get_cond(Vision())

    class Encoded:
        image_embeds = inputs["embeds"][:1]

    cond = [{"clip_vision_output": Encoded(), "strength": 0.8, "noise_augmentation": 0.3}]
    out["adm"] = unclip_adm(cond, CLIPEmbeddingNoiseAugmentation(1024), "cpu", 0.05, 40 - 10)
    gligen = load_gligen_file(work / "gligen.safetensors")
    params = [(inputs["phrase"], 4, 2, 1, 3), (inputs["phrase"] * 0.5, 2, 6, 5, 0)]
    entry = {"gligen": ("position", gligen, params)}
    options = with_gligen_patch({}, [entry], (1, 4, 8, 8), 1)
    patch = options["patches"]["middle_patch"][0]
    out["fuser0"] = patch(inputs["x0"], {"transformer_index": 0})
    out["fuser1"] = patch(inputs["x1"], {"transformer_index": 1})
    return out


def vit_l() -> object:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                              num_attention_heads=16, image_size=224, patch_size=14, projection_dim=768,
                              hidden_act="quick_gelu")  # fmt: skip
    model = CLIPVisionModelWithProjection(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.01)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy-src", default="/tmp/comfy/ComfyUI")
    parser.add_argument("--comfy-python", default="/tmp/comfy/venv/bin/python")
    options = parser.parse_args()
    from safetensors.torch import load_file, save_file

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vision-parity-") as folder:
        work = Path(folder)
        model = vit_l()
        write(work / "vit_l_hf.safetensors", hf_layout(model))
        write(work / "vit_l_open_clip.safetensors", open_clip_layout(model))
        del model
        write(work / "style.safetensors", style_layout(width=1024, context=768, tokens=8, layers=3))
        # 768-wide phrases and context: ComfyUI's SD1.x head rule (8 heads) applies to every fuser.
        write(work / "gligen.safetensors", gligen_layout(text_width=768))
        gen = torch.Generator().manual_seed(1)
        inputs = {
            "image": torch.rand(2, 200, 300, 3, generator=gen),
            "style_in": torch.randn(1, 257, 1024, generator=gen),
            "embeds": torch.randn(2, 1024, generator=gen),
            "phrase": torch.randn(1, 768, generator=gen),
            "x0": torch.randn(1, 64, 32, generator=gen),
            "x1": torch.randn(1, 16, 64, generator=gen),
        }
        save_file(inputs, str(work / "inputs.safetensors"))
        subprocess.run([options.comfy_python, "-c", COMFY_SIDE, options.comfy_src, str(work)],
                       cwd=options.comfy_src, check=True)  # fmt: skip
        theirs = load_file(str(work / "comfy.safetensors"))
        ours = loom_side(work, inputs)
    print(f"{'output':52} {'shape':>18} {'max |Δ|':>10} {'max |x|':>10}")
    worst = 0.0
    for key, value in theirs.items():
        diff = float((ours[key].float() - value).abs().max())
        scale = float(value.abs().max())
        worst = max(worst, diff / max(scale, 1e-12))
        print(f"{key:52} {tuple(value.shape)!s:>18} {diff:10.2e} {scale:10.2e}")
    print(f"largest difference relative to the output's magnitude: {worst:.1e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
