"""The SD1.x/SD2.x/SDXL workflow families of ComfyUI_examples, as UI-format workflows the front end would
save, converted, validated and run end to end on tiny random-weight stand-ins of the files they load.

One test per family: img2img, inpainting, hires fix (latent, other prompt and model, ESRGAN), LoRA (one and
chained), textual-inversion embeddings, area composition, noisy latent composition, LCM, SDXL Turbo,
SDXL base + refiner, SDXL edit model (InstructPix2Pix). The graphs are written here from their shapes;
the example files themselves stay out of the repository. Model merging and hypernetworks have their own
tests beside those nodes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from safetensors.torch import load_file, save_file

from engine.executor import Executor
from engine.folders import Folders
from engine.graph import validate_prompt
from engine.models.detect import ARCH_METADATA_KEY
from engine.models.keymap import vae_to_original
from engine.models.save import arch_hints, save_single_file
from engine.models.tiny import TEXT_WIDTH, build_tiny
from engine.ui_workflow import ui_to_api
from tests.nodes.ui_builder import UiWorkflow
from tests.nodes.upscale_fixtures import esrgan_new_layout, write_standin

SD1 = "tiny_sd1.safetensors"
SDXL = "tiny_sdxl.safetensors"


@pytest.fixture(scope="module")
def extra_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Files beside the shared tiny checkpoints: a refiner, an edit model, a VAE, LoRAs, an embedding and
    an ESRGAN model, each in its real key layout."""
    root = tmp_path_factory.mktemp("example_models")
    for kind in ("checkpoints", "vae", "loras", "embeddings", "upscale_models"):
        (root / kind).mkdir()
    refiner = build_tiny("sdxl_refiner")
    save_single_file(
        root / "checkpoints" / "tiny_refiner.safetensors", refiner.unet, refiner.vae, refiner.text_encoders,
        "sdxl_refiner",
    )  # fmt: skip
    _write_edit_model(root / "checkpoints" / "tiny_sdxl_edit.safetensors")
    sd1 = build_tiny("sd1", seed=3)
    vae_metadata = {ARCH_METADATA_KEY: json.dumps(arch_hints(sd1.unet, sd1.vae, []))}
    save_file(vae_to_original(sd1.vae.state_dict(), sd1.vae.config), str(root / "vae" / "other.safetensors"),
              vae_metadata)  # fmt: skip
    for seed, name in enumerate(("style_lora", "detail_lora", "lcm_lora")):
        save_file(_lora(sd1.unet, seed), str(root / "loras" / f"{name}.safetensors"))
    torch.save(
        {"string_to_param": {"*": torch.randn(2, TEXT_WIDTH, generator=torch.Generator().manual_seed(9))}},
        root / "embeddings" / "easynegative.pt",
    )
    write_standin(root / "upscale_models" / "RealESRGAN_x4plus.safetensors", esrgan_new_layout())
    return root


def _write_edit_model(path: Path) -> None:
    """An SDXL InstructPix2Pix-style edit model: the UNet takes 8 channels (noise + the image's latent)."""
    models = build_tiny("sdxl", seed=4)
    old = models.unet.conv_in
    conv = torch.nn.Conv2d(8, old.out_channels, old.kernel_size, padding=old.padding)
    with torch.no_grad():
        conv.weight.copy_(torch.cat([old.weight, torch.randn_like(old.weight) * 0.05], dim=1))
        conv.bias.copy_(old.bias)
    models.unet.conv_in = conv
    models.unet.register_to_config(in_channels=8)
    save_single_file(path, models.unet, models.vae, models.text_encoders, "sdxl")


def _lora(unet: Any, seed: int) -> dict[str, torch.Tensor]:
    """A kohya-layout LoRA on one UNet projection and one text-encoder projection."""
    generator = torch.Generator().manual_seed(seed)
    target = "down_blocks.0.attentions.0.proj_in"
    width = unet.get_submodule(target).weight.shape[0]
    unet_key = f"lora_unet_{target.replace('.', '_')}"
    text_key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
    return {
        f"{unet_key}.lora_down.weight": torch.randn(2, width, 1, 1, generator=generator),
        f"{unet_key}.lora_up.weight": torch.randn(width, 2, 1, 1, generator=generator),
        f"{unet_key}.alpha": torch.tensor(2.0),
        f"{text_key}.lora_down.weight": torch.randn(2, TEXT_WIDTH, generator=generator),
        f"{text_key}.lora_up.weight": torch.randn(TEXT_WIDTH, 2, generator=generator),
    }


@pytest.fixture
def folders(sd_folders: Folders, extra_models: Path) -> Folders:
    shared = sd_folders.models["checkpoints"]
    sd_folders.models["checkpoints"] = [*shared, extra_models / "checkpoints"]
    for kind in ("vae", "loras", "embeddings", "upscale_models"):
        sd_folders.models[kind] = [extra_models / kind]
    image = np.random.default_rng(0).integers(0, 255, (64, 64, 4), dtype=np.uint8)
    image[..., 3] = 255
    image[16:48, 16:48, 3] = 0  # a transparent square: LoadImage's mask
    PILImage.fromarray(image, "RGBA").save(sd_folders.input / "photo.png")
    return sd_folders


def run_ui(executor: Executor, graph: UiWorkflow) -> tuple[dict[str, Any], Any]:
    prompt = ui_to_api(graph.workflow(), executor.registry)
    checked = validate_prompt(executor.registry, prompt)
    assert checked.ok, checked.node_errors
    result = executor.execute(checked.prompt, "example", checked.outputs)
    assert result.status == "success", result.error
    return prompt, result


def pixels(folders: Folders, result: Any, node: int) -> np.ndarray:
    info = result.outputs[str(node)]["images"][0]
    base = folders.output if info["type"] == "output" else folders.temp
    return np.asarray(PILImage.open(base / info["subfolder"] / info["filename"]))


def text_graph(graph: UiWorkflow, ckpt: str, positive: str = "a red circle") -> tuple[int, int, int]:
    """CheckpointLoaderSimple and the two CLIPTextEncode nodes every example starts with."""
    loader = graph.add("CheckpointLoaderSimple", [ckpt])
    pos = graph.add("CLIPTextEncode", [positive], clip=(loader, 1))
    neg = graph.add("CLIPTextEncode", ["watermark, blurry"], clip=(loader, 1))
    return loader, pos, neg


Source = tuple[int, int]


def ksampler(graph: UiWorkflow, model: Source, pos: int, neg: int, latent: Source, denoise: float = 1) -> int:
    return graph.add(
        "KSampler",
        [5, "fixed", 3, 6.0, "euler", "normal", denoise],
        model=model, positive=(pos, 0), negative=(neg, 0), latent_image=latent,
    )  # fmt: skip


def decode_and_save(graph: UiWorkflow, samples: int, vae: tuple[int, int], prefix: str) -> int:
    image = graph.add("VAEDecode", [], samples=(samples, 0), vae=vae)
    return graph.add("SaveImage", [prefix], images=(image, 0))


def test_img2img(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SD1)
    image = graph.add("LoadImage", ["photo.png", "image"])
    latent = graph.add("VAEEncode", [], pixels=(image, 0), vae=(loader, 2))
    sample = ksampler(graph, (loader, 0), pos, neg, (latent, 0), denoise=0.87)
    save = decode_and_save(graph, sample, (loader, 2), "img2img")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(sample)]["inputs"]["denoise"] == 0.87 and prompt[str(sample)]["inputs"]["seed"] == 5
    # The tiny VAE scales by 2: 64 px → 32 latent → 64 px.
    assert pixels(folders, result, save).shape == (64, 64, 3)


def test_inpainting_with_the_loaded_mask(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SD1)
    image = graph.add("LoadImage", ["photo.png", "image"])
    latent = graph.add("VAEEncodeForInpaint", [6], pixels=(image, 0), vae=(loader, 2), mask=(image, 1))
    sample = ksampler(graph, (loader, 0), pos, neg, (latent, 0))
    decode_and_save(graph, sample, (loader, 2), "inpaint")
    graph.add("SaveLatent", ["latents/encoded"], samples=(latent, 0))
    graph.add("SaveLatent", ["latents/sampled"], samples=(sample, 0))
    prompt, _ = run_ui(executor, graph)
    assert prompt[str(latent)]["inputs"]["grow_mask_by"] == 6
    encoded, sampled = (
        load_file(str(next((folders.output / "latents").glob(f"{name}_*.latent"))))["latent_tensor"]
        for name in ("encoded", "sampled")
    )
    # The transparent square (grown by 6 px) is repainted; the corners, far from it, are kept exactly.
    assert torch.allclose(sampled[..., :4, :4], encoded[..., :4, :4], atol=1e-5)
    assert not torch.allclose(sampled[..., 14:18, 14:18], encoded[..., 14:18, 14:18])


def test_hires_fix_in_latent_space(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SD1)
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    first = ksampler(graph, (loader, 0), pos, neg, (empty, 0))
    bigger = graph.add("LatentUpscale", ["nearest-exact", 96, 96, "disabled"], samples=(first, 0))
    second = ksampler(graph, (loader, 0), pos, neg, (bigger, 0), denoise=0.5)
    save = decode_and_save(graph, second, (loader, 2), "hires")
    _, result = run_ui(executor, graph)
    assert pixels(folders, result, save).shape == (24, 24, 3)  # 96 px → 12 latent → 24 px (tiny VAE ×2)


def test_hires_fix_with_another_prompt_and_model(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    first_loader, pos, neg = text_graph(graph, SD1)
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    first = ksampler(graph, (first_loader, 0), pos, neg, (empty, 0))
    second_loader = graph.add("CheckpointLoaderSimple", ["tiny_sd2.safetensors"])
    skip = graph.add("CLIPSetLastLayer", [-2], clip=(second_loader, 1))
    pos2 = graph.add("CLIPTextEncode", ["a red circle, detailed"], clip=(skip, 0))
    neg2 = graph.add("CLIPTextEncode", [""], clip=(skip, 0))
    bigger = graph.add("LatentUpscaleBy", ["bislerp", 1.5], samples=(first, 0))
    second = ksampler(graph, (second_loader, 0), pos2, neg2, (bigger, 0), denoise=0.6)
    save = decode_and_save(graph, second, (second_loader, 2), "hires2")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(skip)]["inputs"]["stop_at_clip_layer"] == -2
    assert pixels(folders, result, save).shape == (24, 24, 3)


def test_hires_fix_with_an_upscale_model(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SD1)
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    first = ksampler(graph, (loader, 0), pos, neg, (empty, 0))
    image = graph.add("VAEDecode", [], samples=(first, 0), vae=(loader, 2))
    upscaler = graph.add("UpscaleModelLoader", ["RealESRGAN_x4plus.safetensors"])
    upscaled = graph.add("ImageUpscaleWithModel", [], upscale_model=(upscaler, 0), image=(image, 0))
    scaled = graph.add("ImageScale", ["bilinear", 48, 48, "disabled"], image=(upscaled, 0))
    latent = graph.add("VAEEncode", [], pixels=(scaled, 0), vae=(loader, 2))
    second = ksampler(graph, (loader, 0), pos, neg, (latent, 0), denoise=0.5)
    save = decode_and_save(graph, second, (loader, 2), "esrgan")
    _, result = run_ui(executor, graph)
    assert pixels(folders, result, save).shape == (48, 48, 3)


def _lora_graph(executor: Executor, loras: list[tuple[str, float]]) -> tuple[UiWorkflow, int]:
    graph = UiWorkflow(executor.registry)
    loader = graph.add("CheckpointLoaderSimple", [SD1])
    model, clip = (loader, 0), (loader, 1)
    for name, strength in loras:
        lora = graph.add("LoraLoader", [name, strength, strength], model=model, clip=clip)
        model, clip = (lora, 0), (lora, 1)
    pos = graph.add("CLIPTextEncode", ["a red circle"], clip=clip)
    neg = graph.add("CLIPTextEncode", [""], clip=clip)
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    sample = ksampler(graph, model, pos, neg, (empty, 0))
    return graph, decode_and_save(graph, sample, (loader, 2), "lora")


def test_one_lora_and_chained_loras(executor: Executor, folders: Folders) -> None:
    def image(loras: list[tuple[str, float]]) -> np.ndarray:
        graph, save = _lora_graph(executor, loras)
        return pixels(folders, run_ui(executor, graph)[1], save)

    plain = image([])
    one = image([("style_lora.safetensors", 1.0)])
    two = image([("style_lora.safetensors", 1.0), ("detail_lora.safetensors", 0.8)])
    assert not np.array_equal(one, plain) and not np.array_equal(two, one)
    assert np.array_equal(image([("style_lora.safetensors", 0.0)]), plain)


def test_textual_inversion_embedding_in_the_prompt(executor: Executor, folders: Folders) -> None:
    def image(negative: str) -> np.ndarray:
        graph = UiWorkflow(executor.registry)
        loader = graph.add("CheckpointLoaderSimple", [SD1])
        pos = graph.add("CLIPTextEncode", ["a red circle"], clip=(loader, 1))
        neg = graph.add("CLIPTextEncode", [negative], clip=(loader, 1))
        empty = graph.add("EmptyLatentImage", [64, 64, 1])
        sample = ksampler(graph, (loader, 0), pos, neg, (empty, 0))
        save = decode_and_save(graph, sample, (loader, 2), "embedding")
        return pixels(folders, run_ui(executor, graph)[1], save)

    with_embedding = image("embedding:easynegative, blurry")
    assert not np.array_equal(with_embedding, image("easynegative, blurry"))
    assert not np.array_equal(image("(embedding:easynegative:1.2), blurry"), with_embedding)


def test_area_composition(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader = graph.add("CheckpointLoaderSimple", [SD1])
    skip = graph.add("CLIPSetLastLayer", [-2], clip=(loader, 1))
    vae = graph.add("VAELoader", ["other.safetensors"])
    combined = graph.add("CLIPTextEncode", ["a landscape"], clip=(skip, 0))
    for x, text in ((0, "morning"), (64, "night")):
        area_text = graph.add("CLIPTextEncode", [text], clip=(skip, 0))
        area = graph.add("ConditioningSetArea", [64, 64, x, 0, 1.2], conditioning=(area_text, 0))
        both = {"conditioning_1": (combined, 0), "conditioning_2": (area, 0)}
        combined = graph.add("ConditioningCombine", [], **both)
    neg = graph.add("CLIPTextEncode", [""], clip=(skip, 0))
    empty = graph.add("EmptyLatentImage", [128, 64, 1])
    first = ksampler(graph, (loader, 0), combined, neg, (empty, 0))
    bigger = graph.add("LatentUpscale", ["nearest-exact", 160, 96, "disabled"], samples=(first, 0))
    second = ksampler(graph, (loader, 0), combined, neg, (bigger, 0), denoise=0.5)
    save = decode_and_save(graph, second, (vae, 0), "area")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(save - 1)]["inputs"]["vae"] == [str(vae), 0]
    assert pixels(folders, result, save).shape == (24, 40, 3)


def test_noisy_latent_composition(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SD1)

    def advanced(latent: tuple[int, int], noise: str, start: int, end: int, leftover: str) -> int:
        return graph.add(
            "KSamplerAdvanced",
            [noise, 7, "fixed", 4, 6.0, "euler", "normal", start, end, leftover],
            model=(loader, 0), positive=(pos, 0), negative=(neg, 0), latent_image=latent,
        )  # fmt: skip

    background = advanced((graph.add("EmptyLatentImage", [96, 64, 1]), 0), "enable", 0, 2, "enable")
    subject = advanced((graph.add("EmptyLatentImage", [32, 32, 1]), 0), "enable", 0, 2, "enable")
    layers = {"samples_to": (background, 0), "samples_from": (subject, 0)}
    composite = graph.add("LatentComposite", [32, 16, 8], **layers)
    finish = advanced((composite, 0), "disable", 2, 10000, "disable")
    save = decode_and_save(graph, finish, (loader, 2), "noisy")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(finish)]["inputs"]["add_noise"] == "disable"
    assert prompt[str(finish)]["inputs"]["start_at_step"] == 2
    assert pixels(folders, result, save).shape == (16, 24, 3)


def test_lcm_lora_with_model_sampling_discrete(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader = graph.add("CheckpointLoaderSimple", [SD1])
    lora = graph.add("LoraLoader", ["lcm_lora.safetensors", 1.0, 1.0], model=(loader, 0), clip=(loader, 1))
    sampling = graph.add("ModelSamplingDiscrete", ["lcm", False], model=(lora, 0))
    pos = graph.add("CLIPTextEncode", ["a red circle"], clip=(lora, 1))
    neg = graph.add("CLIPTextEncode", [""], clip=(lora, 1))
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    sample = graph.add(
        "KSampler",
        [0, "randomize", 4, 1.0, "lcm", "sgm_uniform", 1.0],
        model=(sampling, 0), positive=(pos, 0), negative=(neg, 0), latent_image=(empty, 0),
    )  # fmt: skip
    save = decode_and_save(graph, sample, (loader, 2), "lcm")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(sampling)]["inputs"] == {"model": [str(lora), 0], "sampling": "lcm", "zsnr": False}
    assert prompt[str(sample)]["inputs"]["sampler_name"] == "lcm"
    assert pixels(folders, result, save).std() > 0


def test_sdxl_turbo_with_sampler_custom(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, SDXL)
    select = graph.add("KSamplerSelect", ["euler_ancestral"])
    schedule = graph.add("SDTurboScheduler", [1, 1.0], model=(loader, 0))
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    sample = graph.add(
        "SamplerCustom",
        [True, 0, "fixed", 1.0],
        model=(loader, 0), positive=(pos, 0), negative=(neg, 0), sampler=(select, 0), sigmas=(schedule, 0),
        latent_image=(empty, 0),
    )  # fmt: skip
    image = graph.add("VAEDecode", [], samples=(sample, 0), vae=(loader, 2))
    preview = graph.add("PreviewImage", [], images=(image, 0))
    prompt, result = run_ui(executor, graph)
    assert prompt[str(sample)]["inputs"]["add_noise"] is True
    assert pixels(folders, result, preview).shape == (16, 16, 3)
    assert result.outputs[str(preview)]["images"][0]["type"] == "temp"


def test_sdxl_base_then_refiner(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    base, pos, neg = text_graph(graph, SDXL)
    refiner, rpos, rneg = text_graph(graph, "tiny_refiner.safetensors")
    empty = graph.add("EmptyLatentImage", [64, 64, 1])
    first = graph.add(
        "KSamplerAdvanced",
        ["enable", 721, "fixed", 5, 8.0, "euler", "normal", 0, 3, "enable"],
        model=(base, 0), positive=(pos, 0), negative=(neg, 0), latent_image=(empty, 0),
    )  # fmt: skip
    second = graph.add(
        "KSamplerAdvanced",
        ["disable", 0, "fixed", 5, 8.0, "euler", "normal", 3, 1000, "disable"],
        model=(refiner, 0), positive=(rpos, 0), negative=(rneg, 0), latent_image=(first, 0),
    )  # fmt: skip
    save = decode_and_save(graph, second, (refiner, 2), "refiner")
    _, result = run_ui(executor, graph)
    assert pixels(folders, result, save).shape == (16, 16, 3)


def test_sdxl_edit_model_with_dual_cfg(executor: Executor, folders: Folders) -> None:
    graph = UiWorkflow(executor.registry)
    loader, pos, neg = text_graph(graph, "tiny_sdxl_edit.safetensors", "make it blue")
    image = graph.add("LoadImage", ["photo.png", "image"])
    edit = graph.add(
        "InstructPixToPixConditioning",
        [],
        positive=(pos, 0), negative=(neg, 0), vae=(loader, 2), pixels=(image, 0),
    )  # fmt: skip
    guider = graph.add(
        "DualCFGGuider",
        [3.0, 1.5, "regular"],
        model=(loader, 0), cond1=(edit, 0), cond2=(edit, 1), negative=(neg, 0),
    )  # fmt: skip
    select = graph.add("KSamplerSelect", ["euler"])
    schedule = graph.add("BasicScheduler", ["normal", 3, 1.0], model=(loader, 0))
    noise = graph.add("RandomNoise", [3, "fixed"])
    sample = graph.add(
        "SamplerCustomAdvanced",
        [],
        noise=(noise, 0), guider=(guider, 0), sampler=(select, 0), sigmas=(schedule, 0),
        latent_image=(edit, 2),
    )  # fmt: skip
    save = decode_and_save(graph, sample, (loader, 2), "edit")
    prompt, result = run_ui(executor, graph)
    assert prompt[str(guider)]["inputs"]["cfg_conds"] == 3.0
    assert pixels(folders, result, save).shape == (64, 64, 3)
