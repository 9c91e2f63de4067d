"""Tiny stand-in model files for `bench/family_templates.py`, and which one a workflow's file name gets.

Each family's files come from the test fixtures: Flux.1 dev and schnell (split files and fp8 all-in-one
checkpoints), Flux Fill (384 input channels) and Flux Canny/Depth (128), SD3.5 (split and all-in-one),
Z-Image, Qwen-Image (and Qwen-Image Layered with its RGBA VAE, from tests/nodes/qwen_layered_fixtures.py),
Chroma and Chroma Radiance (its x0 variant), Flux.2 dev and Klein 4B / 9B (tests/nodes/flux2_fixtures.py),
Flux 3 Klein base and distilled with Qwen3-VL 4B (tests/nodes/flux3_fixtures.py), HiDream-I1/E1
(tests/nodes/hidream_fixtures.py), and their ControlNets (tests/nodes/flow_controlnet_fixtures.py); Lotus-D
with an SD VAE (tests/nodes/lotus_fixtures.py); Flux Redux's style model, the SigLIP vision encoder and
USO's projector (tests/nodes/redux_fixtures.py); model patches in their released layouts (DiffSynth
ControlNets, the Z-Image Fun ControlNet 1.0). Kinds Loom cannot load (Qwen3.5 prompt enhancers) get a file
that only lets the workflow validate; running such a workflow then reports Loom's own loading error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The widget positions of the file names each loader takes, and the folder they are in.
FILE_WIDGETS = {
    "UNETLoader": ((0, "diffusion_models"),),
    "CheckpointLoaderSimple": ((0, "checkpoints"),),
    "CLIPLoader": ((0, "text_encoders"),),
    "DualCLIPLoader": ((0, "text_encoders"), (1, "text_encoders")),
    "TripleCLIPLoader": ((0, "text_encoders"), (1, "text_encoders"), (2, "text_encoders")),
    "QuadrupleCLIPLoader": tuple((i, "text_encoders") for i in range(4)),
    "VAELoader": ((0, "vae"),),
    "LoraLoaderModelOnly": ((0, "loras"),),
    "LoraLoader": ((0, "loras"),),
    "ControlNetLoader": ((0, "controlnet"),),
    "StyleModelLoader": ((0, "style_models"),),
    "CLIPVisionLoader": ((0, "clip_vision"),),
    "ModelPatchLoader": ((0, "model_patches"),),
    "UpscaleModelLoader": ((0, "upscale_models"),),
}

# Loader choices that name no file (ComfyUI's built-in ones): no stand-in is written for them.
BUILT_IN_CHOICES = {"VAELoader": frozenset({"pixel_space"})}

# (folder, words any of which the lower-case file name holds, stand-in key), first match wins.
RULES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("diffusion_models", ("layered",), "qwen_image_layered"),
    # Flux 3 Klein (before Flux.2's "klein"): base, and the distilled flow map; its Qwen3-VL 4B.
    ("diffusion_models", ("flux3-image-klein-base",), "flux3_klein_base"),
    ("diffusion_models", ("flux3",), "flux3_klein"),
    ("text_encoders", ("qwen3vl_4b",), "qwen3vl_4b"),
    ("diffusion_models", ("klein-9b", "klein-base-9b"), "flux2_klein_9b"),
    ("diffusion_models", ("klein",), "flux2_klein_4b"),
    ("diffusion_models", ("flux2", "flux-2", "flux_2"), "flux2_dev"),
    # Qwen-Image 2.1 (before Qwen-Image's and Qwen3's rules); its Qwen3.5 prompt enhancers are a model
    # Loom does not load: their stand-in only lets the workflows validate.
    ("diffusion_models", ("qwen_image_2.1",), "qwen_image21"),
    ("text_encoders", ("qwen3vl",), "qwen3vl"),
    ("text_encoders", ("qwen3.5",), "unloadable"),
    ("vae", ("qwen_image_2.1",), "qwen_image21_vae"),
    ("diffusion_models", ("lotus",), "lotus"),
    # HiDream-I1 / E1: its long CLIPs (248 positions, CLIP-L projected) and Llama 3.1 (with a tokenizer).
    ("diffusion_models", ("hidream",), "hidream"),
    ("text_encoders", ("clip_l_hidream",), "clip_l_hidream"),
    ("text_encoders", ("clip_g_hidream",), "clip_g_hidream"),
    ("text_encoders", ("llama",), "llama_3.1"),
    ("diffusion_models", ("qwen",), "qwen_image"),
    ("diffusion_models", ("radiance",), "chroma_radiance"),
    ("diffusion_models", ("chroma",), "chroma"),
    ("diffusion_models", ("z_image", "z-image", "zimage"), "zimage"),
    # Lumina Image 2.0 and its Neta Lumina fine-tunes (ComfyUI_examples' lumina_2.safetensors; the split
    # lumina_2_model_bf16 and its Gemma 2 2B, not PixelDiT's gemma_2_2b_it_elm).
    ("diffusion_models", ("lumina_2", "lumina2", "neta"), "lumina2"),
    ("checkpoints", ("lumina_2", "lumina2", "neta"), "lumina2_ckpt"),
    ("text_encoders", ("gemma_2_2b_fp16", "gemma_2_2b_bf16"), "gemma_2_2b"),
    ("diffusion_models", ("fill",), "flux_fill"),
    ("diffusion_models", ("canny", "depth"), "flux_control"),
    ("diffusion_models", ("schnell",), "flux_schnell"),
    ("diffusion_models", ("flux", "kontext", "krea"), "flux_dev"),
    ("diffusion_models", ("sd3",), "sd3"),
    ("checkpoints", ("schnell",), "flux_schnell_ckpt"),
    ("checkpoints", ("flux",), "flux_dev_ckpt"),
    ("checkpoints", ("sd3",), "sd3_ckpt"),
    ("text_encoders", ("qwen_3_8b", "qwen3_8b"), "qwen_3_8b"),
    ("text_encoders", ("qwen_3", "qwen3"), "qwen_3"),
    ("text_encoders", ("mistral",), "mistral_3"),
    ("text_encoders", ("qwen",), "qwen_2.5"),
    ("text_encoders", ("clip_g",), "clip_g"),
    ("text_encoders", ("clip_l",), "clip_l"),
    ("text_encoders", ("t5",), "t5"),
    ("vae", ("layered",), "qwen_image_layered_vae"),
    ("vae", ("flux2", "flux-2"), "flux2_vae"),
    ("vae", ("small_decoder",), "flux2_small_vae"),
    ("vae", ("qwen", "wan"), "qwen_image_vae"),
    ("vae", ("vae-ft-mse", "sd-vae"), "sd_vae"),  # an SD1.x/2.x VAE (the Lotus depth graphs)
    ("vae", ("ae.", "flux", "sd3", "vae"), "ae"),
    ("upscale_models", ("",), "esrgan"),
    ("controlnet", ("fun",), "controlnet_qwen_fun"),
    ("controlnet", ("sd3.5_large_controlnet_blur",), "controlnet_sd35_blur"),
    ("controlnet", ("sd3.5",), "controlnet_sd35_canny"),
    ("controlnet", ("sd3",), "controlnet_sd3"),
    ("controlnet", ("qwen-image-instantx-controlnet-inpainting",), "controlnet_qwen_inpaint"),
    ("controlnet", ("qwen",), "controlnet_qwen"),
    ("controlnet", ("flux",), "controlnet_flux"),
    ("controlnet", ("",), "unloadable"),
    ("style_models", ("redux",), "flux_redux"),
    ("style_models", ("",), "unloadable"),
    ("clip_vision", ("sigclip", "siglip"), "siglip"),
    ("clip_vision", ("",), "unloadable"),
    ("model_patches", ("inpaint",), "diffsynth_inpaint"),
    ("model_patches", ("diffsynth",), "diffsynth"),
    ("model_patches", ("uso",), "uso_projector"),
    ("model_patches", ("fun",), "zimage_fun"),
    ("model_patches", ("",), "unloadable"),
)


class NoStandIn(LookupError):
    """A workflow names a file of a kind the bench has no stand-in for."""


def lora_for(model: Path) -> Path:
    """A LoRA that changes nothing but matches a layer of this diffusion model (zero up and down
    matrices on its first weight matrix, under the reference `diffusion_model.` name): Loom refuses a
    LoRA that matches no layer at all."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = model.with_name(f"lora_for_{model.stem}.safetensors")
    if path.exists():
        return path
    with safe_open(str(model), "pt") as handle:
        key = next(k for k in sorted(handle.keys()) if len(handle.get_slice(k).get_shape()) == 2)
        rows, columns = handle.get_slice(key).get_shape()
    module = key.removeprefix("model.diffusion_model.").removesuffix(".weight")
    lora = {
        f"diffusion_model.{module}.lora_down.weight": torch.zeros(1, columns),
        f"diffusion_model.{module}.lora_up.weight": torch.zeros(rows, 1),
    }
    save_file(lora, str(path))
    return path


def pick(folder: str, name: str, made: dict[str, Path]) -> Path:
    lower = name.lower()
    for kind, words, key in RULES:
        if kind == folder and any(word in lower for word in words):
            return made[key]
    raise NoStandIn(f"no stand-in for {folder}/{name}")


def _flux_variant(in_channels: int, seed: int) -> dict[str, Any]:
    """A tiny Flux dev whose image input takes extra channels (Fill: 384, Canny/Depth: 128) in the
    reference layout; its output stays 64 wide."""
    import torch
    from diffusers import FluxTransformer2DModel

    from tests.nodes.flow_fixtures import CLIP_L_WIDTH, JOINT, flux_to_comfy

    torch.manual_seed(seed)
    model = FluxTransformer2DModel(
        patch_size=1,
        in_channels=in_channels,
        out_channels=64,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=128,
        num_attention_heads=1,
        joint_attention_dim=JOINT,
        pooled_projection_dim=CLIP_L_WIDTH,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.05)
    return flux_to_comfy(model.state_dict(), 1, 1)


def _checkpoint(path: Path, transformer: dict[str, Any], made: dict[str, Path]) -> None:
    """A flux1-*-fp8 style all-in-one file: fp8 transformer matrices, the text encoders and VAE beside."""
    import torch
    from safetensors.torch import load_file, save_file

    state = {
        "model.diffusion_model." + k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v.half()
        for k, v in transformer.items()
    }
    state |= {"first_stage_model." + k: v.half() for k, v in load_file(str(made["ae"])).items()}
    for role, key in (("clip_l", "clip_l"), ("t5xxl", "t5")):
        state |= {
            f"text_encoders.{role}.transformer." + k: v.half() for k, v in load_file(str(made[key])).items()
        }
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def _write_controlnets(work: Path) -> dict[str, Path]:
    """The flow families' ControlNets in their files' layouts, sized for the stand-ins above: Stability's
    SD3.5 (blur, canny), InstantX's SD3 (64 wide like the SD3 stand-in, so ComfyUI's rule of width / 64
    blocks leaves it no residual to add), Flux and Qwen-Image (whose Inpainting takes the mask channel),
    and Qwen-Image 2512's Fun ControlNet Union (alibaba-pai's layout, as wide as the Qwen-Image stand-in)."""
    from safetensors.torch import save_file

    from tests.nodes.flow_controlnet_fixtures import (
        flux_instantx_controlnet,
        qwen_fun_controlnet,
        qwen_instantx_controlnet,
        sd3_instantx_controlnet,
        sd35_controlnet,
    )

    made = {}
    for key, state in (
        ("controlnet_sd35_blur", sd35_controlnet(seed=50, control_type=0)),
        ("controlnet_sd35_canny", sd35_controlnet(seed=51, control_type=1)),
        ("controlnet_sd3", sd3_instantx_controlnet(seed=52, width=64)),
        ("controlnet_flux", flux_instantx_controlnet(seed=53)),
        ("controlnet_qwen", qwen_instantx_controlnet(seed=54)),
        ("controlnet_qwen_inpaint", qwen_instantx_controlnet(seed=55, inpaint=True)),
        ("controlnet_qwen_fun", qwen_fun_controlnet(seed=56)),
    ):
        made[key] = work / f"controlnet/{key}.safetensors"
        made[key].parent.mkdir(parents=True, exist_ok=True)
        save_file(state, str(made[key]))
    return made


def _flux2_stand_ins(work: Path) -> dict[str, Path]:
    """Flux.2: Klein 4B and 9B (Qwen3 text encoders of two widths, 28 layers so that layers 9, 18, 27
    exist), dev (a Mistral-layout text encoder of 31 layers carrying a tekken tokenizer, a guidance
    embedding), both VAEs. The Klein 4B Qwen3 file is also Z-Image's qwen_3_4b stand-in (the same width as
    Z-Image's caption input)."""
    import torch

    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import qwen_file_state
    from tests.nodes.flux2_fixtures import (
        flux2_to_comfy,
        tiny_flux2_transformer,
        tiny_klein_text_encoder,
        write_flux2_dev_files,
        write_klein_files,
    )

    write_klein_files(work)
    made = {
        "flux2_klein_4b": work / "diffusion_models/flux-2-klein-4b.safetensors",
        "qwen_3": work / "text_encoders/qwen_3_4b.safetensors",
        "flux2_vae": work / "vae/flux2-vae.safetensors",
        "flux2_small_vae": work / "vae/full_encoder_small_decoder.safetensors",
    }
    qwen_8b = tiny_klein_text_encoder(41, hidden=48)
    made["qwen_3_8b"] = work / "text_encoders/qwen_3_8b.safetensors"
    _save(made["qwen_3_8b"], qwen_file_state(qwen_8b), torch.bfloat16)
    made["flux2_klein_9b"] = work / "diffusion_models/flux-2-klein-9b.safetensors"
    _save(made["flux2_klein_9b"], flux2_to_comfy(tiny_flux2_transformer(42, joint=3 * 48).state_dict()))
    write_flux2_dev_files(work)
    made["mistral_3"] = work / "text_encoders/mistral_3_small_flux2_bf16.safetensors"
    made["flux2_dev"] = work / "diffusion_models/flux2_dev.safetensors"
    return made


def _qwen_image21(work: Path) -> dict[str, Path]:
    """Qwen-Image 2.1's int8 ConvRot diffusion model, Qwen3-VL text encoder and RGBA VAE
    (tests/nodes/qwen21_fixtures.py)."""
    from tests.nodes.qwen21_fixtures import write_files

    write_files(work)
    return {
        "qwen_image21": work / "diffusion_models/qwen_image_2.1_int8_convrot.safetensors",
        "qwen3vl": work / "text_encoders/qwen3vl_8b_int8_convrot.safetensors",
        "qwen_image21_vae": work / "vae/qwen_image_2.1_vae_bf16.safetensors",
    }


def _flux3(work: Path) -> dict[str, Path]:
    """Flux 3 Klein's int8 ConvRot diffusion models and Qwen3-VL 4B (tests/nodes/flux3_fixtures.py)."""
    from tests.nodes.flux3_fixtures import BASE, DISTILLED, TEXT, write_files

    write_files(work)
    return {
        "flux3_klein_base": work / "diffusion_models" / BASE,
        "flux3_klein": work / "diffusion_models" / DISTILLED,
        "qwen3vl_4b": work / "text_encoders" / TEXT,
    }


def _hidream(work: Path) -> dict[str, Path]:
    """HiDream's transformer, long CLIPs and Llama 3.1 (tests/nodes/hidream_fixtures.py); its T5 is the
    Flux stand-ins' width. Llama 3's tokenizer stand-in lies in `llama_tokenizer/` beside the Llama file."""
    from tests.nodes.hidream_fixtures import FILES, write_hidream_files

    write_hidream_files(work)
    encoders = work / "text_encoders"
    return {
        "hidream": work / "diffusion_models/hidream_i1_dev_fp8.safetensors",
        "clip_l_hidream": encoders / FILES["clip_l"],
        "clip_g_hidream": encoders / FILES["clip_g"],
        "llama_3.1": encoders / FILES["llama"],
    }


def write_stand_ins(work: Path) -> dict[str, Path]:
    """One tiny file of each kind under `work`, by the key that picks it."""
    import torch
    from safetensors.torch import save_file

    from tests.nodes.flow_fixtures import _save, flux_to_comfy, write_flux_files, write_sd3_files
    from tests.nodes.flow_fixtures_new import write_chroma_files, write_qwen_image_files, write_zimage_files
    from tests.nodes.qwen_layered_fixtures import write_layered_files

    for name, writer in (
        ("zimage", write_zimage_files),
        ("qwen", write_qwen_image_files),
        ("layered", write_layered_files),
        ("chroma", write_chroma_files),
        ("sd3", write_sd3_files),
    ):
        writer(work / name)
    flux = write_flux_files(work / "flux")
    made = {
        "zimage": work / "zimage/diffusion_models/z_image_turbo_bf16.safetensors",
        "qwen_image": work / "qwen/diffusion_models/qwen_image_bf16.safetensors",
        "chroma": work / "chroma/diffusion_models/chroma-unlocked-v35.safetensors",
        "flux_dev": work / "flux/diffusion_models/flux1-dev.safetensors",
        "flux_schnell": work / "flux/unet/flux1-schnell.safetensors",
        "flux_dev_ckpt": work / "flux/checkpoints/flux1-dev-fp8.safetensors",
        "sd3": work / "sd3/diffusion_models/tiny_sd3.safetensors",
        "sd3_ckpt": work / "sd3/checkpoints/tiny_sd3.5_all_in_one.safetensors",
        "qwen_3": work / "zimage/text_encoders/qwen_3_4b.safetensors",
        "qwen_2.5": work / "qwen/text_encoders/qwen_2.5_vl_7b_fp8_scaled.safetensors",
        "clip_l": work / "flux/text_encoders/clip_l.safetensors",
        "clip_g": work / "sd3/text_encoders/tiny_clip_g.safetensors",
        "t5": work / "flux/text_encoders/t5xxl_fp8_e4m3fn.safetensors",
        "ae": work / "flux/vae/ae.safetensors",
        "qwen_image_vae": work / "qwen/vae/qwen_image_vae.safetensors",
        "qwen_image_layered": work / "layered/diffusion_models/qwen_image_layered_bf16.safetensors",
        "qwen_image_layered_vae": work / "layered/vae/qwen_image_layered_vae.safetensors",
    }
    for key, channels, seed in (("flux_fill", 384, 16), ("flux_control", 128, 17)):
        made[key] = work / f"flux/diffusion_models/{key}.safetensors"
        _save(made[key], _flux_variant(channels, seed))
    made["flux_schnell_ckpt"] = work / "flux/checkpoints/flux1-schnell-fp8.safetensors"
    _checkpoint(made["flux_schnell_ckpt"], flux_to_comfy(flux["schnell"].state_dict(), 1, 1), made)
    from tests.nodes.upscale_fixtures import esrgan_new_layout, write_standin

    made |= _flux2_stand_ins(work / "flux2")
    made["esrgan"] = write_standin(work / "esrgan_x4.safetensors", esrgan_new_layout())
    from tests.nodes.model_patch_fixtures import diffsynth_weights, zimage_fun_weights
    from tests.nodes.redux_fixtures import redux_layout, uso_layout

    _flux_image_references(work, made)
    for key, weights in (
        ("diffsynth", diffsynth_weights(18)),
        ("diffsynth_inpaint", diffsynth_weights(19, extra_channels=1)),
        ("uso_projector", uso_layout()),  # reads the SigLIP stand-in's 4 tokens, 16 wide
        # The template's Z-Image-Turbo-Fun-Controlnet-Union is the 1.0 release: 6 layers, 16 input channels.
        ("zimage_fun", zimage_fun_weights(20, "1.0", width=256)),
        ("flux_redux", redux_layout()),
    ):
        made[key] = work / f"{'style_models' if key == 'flux_redux' else 'model_patches'}/{key}.safetensors"
        made[key].parent.mkdir(parents=True, exist_ok=True)
        save_file(weights, str(made[key]))
    made |= _write_controlnets(work)
    made |= _qwen_image21(work / "qwen21")
    from tests.nodes.lotus_fixtures import LAYOUT_FILES, VAE_FILE, write_lotus_files

    write_lotus_files(work / "lotus")  # Lotus-D in the diffusers layout it ships in, with an SD VAE
    made["lotus"] = work / "lotus/diffusion_models" / LAYOUT_FILES["diffusers"]
    made["sd_vae"] = work / "lotus/vae" / VAE_FILE
    from tests.nodes.flow_fixtures import JOINT
    from tests.nodes.flow_fixtures_radiance import tiny_radiance_state

    # Its T5 is the Flux stand-ins' (JOINT wide), which the template's CLIPLoader gets.
    made["chroma_radiance"] = work / "chroma/diffusion_models/chroma-radiance-x0.safetensors"
    _save(made["chroma_radiance"], tiny_radiance_state(20, context=JOINT, x0=True), dtype=None)
    made |= _flux3(work / "flux3")
    made |= _lumina2(work / "lumina2")
    made |= _hidream(work / "hidream")
    made["unloadable"] = work / "unloadable.safetensors"
    save_file({"not_a_model_loom_loads": torch.zeros(1)}, str(made["unloadable"]))
    return made


def _lumina2(work: Path) -> dict[str, Path]:
    """Lumina Image 2.0: the all-in-one checkpoint and the split diffusion model and Gemma 2 2B (with its
    sentencepiece model inside, as ComfyUI's file)."""
    from tests.nodes.lumina2_fixtures import write_lumina2_files

    write_lumina2_files(work)
    return {
        "lumina2_ckpt": work / "checkpoints/lumina_2.safetensors",
        "lumina2": work / "diffusion_models/lumina_2_model_bf16.safetensors",
        "gemma_2_2b": work / "text_encoders/gemma_2_2b_fp16.safetensors",
    }


def _flux_image_references(work: Path, made: dict[str, Path]) -> None:
    """The SigLIP stand-in (20 layers 16 wide, 28-px input) in ComfyUI's sigclip layout, with its heads in
    Loom's `loom.arch` metadata."""
    import json

    from safetensors.torch import save_file

    from tests.nodes.redux_fixtures import SIGLIP, siglip_layout, tiny_siglip

    made["siglip"] = work / "clip_vision/sigclip_vision_patch14_tiny.safetensors"
    made["siglip"].parent.mkdir(parents=True, exist_ok=True)
    metadata = {"loom.arch": json.dumps({"heads": SIGLIP["heads"]})}
    save_file(siglip_layout(tiny_siglip(21)), str(made["siglip"]), metadata)
