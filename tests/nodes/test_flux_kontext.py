"""ComfyUI's remaining Flux nodes on tiny Flux stand-ins: FluxKontextImageScale, ReferenceLatent with the
Kontext placements (FluxKontextMultiReferenceLatentMethod) and FluxDisableGuidance, through the executor
and against diffusers' transformer called by hand."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from engine.executor import Executor
from engine.folders import Folders
from tests.nodes.flow_fixtures import flux_workflow, write_flux_files
from tests.nodes.harness import call
from tests.nodes.test_sd_nodes import image_of, run


@pytest.fixture(scope="module")
def flux_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("kontext_models")
    return root, write_flux_files(root)


@pytest.fixture
def flux_folders(loom_folders: Folders, flux_models: tuple[Path, dict[str, Any]]) -> Folders:
    loom_folders.models = Folders.under(flux_models[0].parent, models_base=flux_models[0]).models
    return loom_folders


@pytest.mark.parametrize(
    ("height", "width", "expected"),
    [(40, 80, (720, 1456)), (64, 64, (1024, 1024)), (90, 60, (1248, 832)), (30, 100, (672, 1568))],
)
def test_kontext_image_scale_picks_the_nearest_training_size(
    executor: Executor, height: int, width: int, expected: tuple[int, int]
) -> None:
    image = torch.rand(2, height, width, 3)
    (out,) = call(executor, "FluxKontextImageScale", image=image)
    assert tuple(out.shape) == (2, *expected, 3) and float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_reference_latent_appends_and_method_is_set(executor: Executor) -> None:
    cond = [[torch.zeros(1, 2, 4), {"guidance": 2.0}]]
    first, second = torch.ones(1, 16, 2, 2), torch.full((1, 16, 2, 4), 2.0)
    (once,) = call(executor, "ReferenceLatent", conditioning=cond, latent={"samples": first})
    (twice,) = call(executor, "ReferenceLatent", conditioning=once, latent={"samples": second})
    (unchanged,) = call(executor, "ReferenceLatent", conditioning=twice)
    refs = unchanged[0][1]["reference_latents"]
    assert len(refs) == 2 and torch.equal(refs[0], first) and torch.equal(refs[1], second)
    assert "reference_latents" not in cond[0][1] and len(once[0][1]["reference_latents"]) == 1
    methods = {}
    for choice in ("offset", "index", "uxo/uno"):
        (out,) = call(
            executor,
            "FluxKontextMultiReferenceLatentMethod",
            conditioning=cond,
            reference_latents_method=choice,
        )
        methods[choice] = out[0][1]["reference_latents_method"]
    assert methods == {"offset": "offset", "index": "index", "uxo/uno": "uxo"}
    (disabled,) = call(executor, "FluxDisableGuidance", conditioning=cond)
    assert disabled[0][1]["guidance"] is None and cond[0][1]["guidance"] == 2.0


def test_placements_follow_comfyui() -> None:
    from engine.diffusion.flux_references import placements

    sizes = [(8, 8), (8, 4), (4, 12)]
    # offset: beside (right) when that keeps the layout squarer, else below; all in plane 1
    assert placements(sizes, 4, 4, "offset") == [(1, 0, 0), (1, 0, 8), (1, 8, 0)]
    assert placements(sizes, 4, 4, "index") == [(1, 0, 0), (2, 0, 0), (3, 0, 0)]
    # uxo: plane 0, diagonally past the image (4 tokens = 8 latent pixels) and the references before
    assert placements(sizes, 4, 4, "uxo") == [(0, 8, 8), (0, 16, 16), (0, 24, 20)]


def _ids(rows: int, cols: int, index: int, row: int, col: int) -> torch.Tensor:
    ids = torch.zeros(rows, cols, 3)
    ids[..., 0] = index
    ids[..., 1] = torch.arange(rows)[:, None] + row
    ids[..., 2] = torch.arange(cols)[None, :] + col
    return ids.reshape(-1, 3)


def _pack(x: torch.Tensor) -> torch.Tensor:
    b, c, h, w = x.shape
    return (
        x.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // 2) * (w // 2), c * 4)
    )


def test_flux_with_references_equals_diffusers_on_the_joined_tokens(
    flux_models: tuple[Path, dict[str, Any]],
) -> None:
    """Two references (offset placement) beside an 8×8 latent: Loom's apply_model equals diffusers'
    transformer run on the image tokens followed by the references' tokens with ComfyUI's ids, keeping
    only the image's part of the output."""
    from engine.models.flow_families import load_diffusion_model

    root, _ = flux_models
    model = load_diffusion_model(root / "diffusion_models" / "flux1-dev.safetensors").model
    with torch.no_grad():  # sharper attention than the random weights give, so positions matter
        for name, p in model.diffusion_model.named_parameters():
            if ".norm_q." in name or ".norm_k." in name or ".norm_added_" in name:
                p.mul_(30.0)
    torch.manual_seed(0)
    x, refs = torch.randn(1, 16, 8, 8), [torch.randn(1, 16, 4, 4), torch.randn(1, 16, 4, 8)]
    context, pooled = torch.randn(1, 5, 192), torch.randn(1, 64)
    sigma = torch.tensor([0.6])
    entry = {"pooled_output": pooled, "guidance": 2.5, "reference_latents": refs}
    with torch.no_grad():
        extra = model.added_conditions([entry], x, 1)
        denoised = model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)
        scaled = [model.process_latent_in(r) for r in refs]
        tokens = torch.cat([_pack(x), _pack(scaled[0]), _pack(scaled[1])], dim=1)
        # offset: the first at (1, 0, 0); the second is wider than tall, so below it: rows from 4 pixels = 2
        ids = torch.cat([_ids(4, 4, 0, 0, 0), _ids(2, 2, 1, 0, 0), _ids(2, 4, 1, 2, 0)])
        out = model.diffusion_model(
            hidden_states=tokens,
            encoder_hidden_states=context,
            pooled_projections=pooled,
            timestep=sigma,
            img_ids=ids,
            txt_ids=torch.zeros(5, 3),
            guidance=torch.tensor([2.5]),
            return_dict=False,
        )[0][:, :16]
        velocity = out.reshape(1, 4, 4, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 8, 8)
    assert torch.allclose(denoised, x - sigma * velocity, atol=1e-4)


def test_disabled_guidance_leaves_the_embedding_out(flux_models: tuple[Path, dict[str, Any]]) -> None:
    """guidance None equals a model whose guidance embedding outputs zero, and differs from guidance 0."""
    from engine.models.flow_families import load_diffusion_model

    root, _ = flux_models
    model = load_diffusion_model(root / "diffusion_models" / "flux1-dev.safetensors").model
    torch.manual_seed(1)
    x, context, pooled, sigma = (
        torch.randn(1, 16, 4, 4),
        torch.randn(1, 3, 192),
        torch.randn(1, 64),
        torch.tensor([0.5]),
    )

    def denoise(guidance: Any, net: Any = model) -> torch.Tensor:
        extra = net.added_conditions([{"pooled_output": pooled, "guidance": guidance}], x, 1)
        with torch.no_grad():
            return net.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)

    silenced = copy.deepcopy(model)
    with torch.no_grad():
        for p in silenced.diffusion_model.time_text_embed.guidance_embedder.linear_2.parameters():
            p.zero_()
    off = denoise(None)
    assert torch.allclose(off, denoise(7.0, silenced), atol=1e-6)
    assert not torch.allclose(off, denoise(0.0), atol=1e-4)


def _kontext_prompt() -> dict[str, Any]:
    """ComfyUI_examples' flux_kontext graph on the tiny files: the loaded image scaled by
    FluxKontextImageScale is left out (it makes a megapixel image), encoded, referenced, guided."""
    prompt = flux_workflow(seed=5)
    prompt |= {
        "40": {"class_type": "LoadImage", "inputs": {"image": "ref.png"}},
        "41": {"class_type": "VAEEncode", "inputs": {"pixels": ["40", 0], "vae": ["10", 0]}},
        "42": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["6", 0], "latent": ["41", 0]}},
    }
    prompt["35"]["inputs"]["conditioning"] = ["42", 0]
    return prompt


def test_kontext_graph_runs_and_the_reference_matters(executor: Executor, flux_folders: Folders) -> None:
    from PIL import Image

    Image.fromarray((np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)).save(
        flux_folders.input / "ref.png"
    )
    prompt = _kontext_prompt()
    with_ref = image_of(flux_folders, run(executor, prompt), "9")
    executor.cache.clear()
    assert np.array_equal(with_ref, image_of(flux_folders, run(executor, prompt), "9"))
    plain = image_of(flux_folders, run(executor, flux_workflow(seed=5)), "9")
    assert with_ref.shape == (64, 64, 3) and not np.array_equal(with_ref, plain)
    # cfg above 1 with a negative that has no reference: the two are run apart, not batched
    prompt["31"]["inputs"]["cfg"] = 2.0
    prompt["33"] = {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["11", 0]}}
    guided = image_of(flux_folders, run(executor, prompt), "9")
    assert np.isfinite(guided).all() and not np.array_equal(guided, with_ref)


def _flux_with_inputs(in_channels: int, seed: int) -> Any:
    from diffusers import FluxTransformer2DModel

    from tests.nodes.flow_fixtures import CLIP_L_WIDTH, JOINT

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
    return model.eval()


@pytest.mark.parametrize("variant", ["fill", "canny"])
def test_fill_and_canny_models_take_the_image_latent_and_mask(tmp_path: Path, variant: str) -> None:
    """Flux Fill (384 input channels: latent, image latent, mask folded 8×8) and Canny/Depth (128: latent,
    image latent) equal diffusers' transformer on the channels joined by hand."""
    from safetensors.torch import save_file

    from engine.models.flow_families import load_diffusion_model
    from tests.nodes.flow_fixtures import flux_to_comfy

    channels = 384 if variant == "fill" else 128
    path = tmp_path / f"flux1-{variant}-dev.safetensors"
    save_file(flux_to_comfy(_flux_with_inputs(channels, 3).state_dict(), 1, 1), str(path))
    model = load_diffusion_model(path).model
    torch.manual_seed(2)
    x, image = torch.randn(1, 16, 4, 6), torch.randn(1, 16, 4, 6)
    mask = (torch.rand(1, 1, 32, 48) > 0.5).float()
    context, pooled, sigma = torch.randn(1, 3, 192), torch.randn(1, 64), torch.tensor([0.4])
    entry = {"pooled_output": pooled, "guidance": 3.0, "concat_latent_image": image, "concat_mask": mask}
    with torch.no_grad():
        extra = model.added_conditions([entry], x, 1)
        denoised = model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=extra)
        parts = [x, model.process_latent_in(image)]
        if variant == "fill":  # each 8×8 block of the mask as 64 channels, row-major within the block
            parts.append(mask.reshape(1, 4, 8, 6, 8).permute(0, 2, 4, 1, 3).reshape(1, 64, 4, 6))
        joined = torch.cat(parts, dim=1)
        out = model.diffusion_model(
            hidden_states=_pack(joined),
            encoder_hidden_states=context,
            pooled_projections=pooled,
            timestep=sigma,
            img_ids=_ids(2, 3, 0, 0, 0),
            txt_ids=torch.zeros(3, 3),
            guidance=torch.tensor([3.0]),
            return_dict=False,
        )[0]
        velocity = out.reshape(1, 2, 3, 16, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, 16, 4, 6)
    assert torch.allclose(denoised, x - sigma * velocity, atol=1e-4)
    if variant == "fill":  # without a mask, Fill sees ones: the whole image is to be repainted
        del entry["concat_mask"]
        with torch.no_grad():
            ones = model.apply_model(
                x, sigma, c_crossattn=context, added_cond_kwargs=model.added_conditions([entry], x, 1)
            )
        assert not torch.allclose(ones, denoised, atol=1e-4)


def test_empty_latent_of_four_channels_becomes_flux_sized(executor: Executor, flux_folders: Folders) -> None:
    """ComfyUI_examples' flux_schnell graph starts from EmptyLatentImage (4 channels): the samplers make
    it the model's 16 zero channels, so it gives EmptySD3LatentImage's image, with KSampler and with
    SamplerCustomAdvanced."""
    reference = image_of(flux_folders, run(executor, flux_workflow(seed=6)), "9")
    prompt = flux_workflow(seed=6)
    prompt["27"] = {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}}
    assert np.array_equal(image_of(flux_folders, run(executor, prompt), "9"), reference)
    del prompt["31"], prompt["33"]
    prompt |= {
        "22": {"class_type": "BasicGuider", "inputs": {"model": ["12", 0], "conditioning": ["35", 0]}},
        "16": {"class_type": "KSamplerSelect", "inputs": {"sampler_name": "euler"}},
        "17": {
            "class_type": "BasicScheduler",
            "inputs": {"model": ["12", 0], "scheduler": "simple", "steps": 3, "denoise": 1.0},
        },
        "25": {"class_type": "RandomNoise", "inputs": {"noise_seed": 6}},
        "13": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["25", 0],
                "guider": ["22", 0],
                "sampler": ["16", 0],
                "sigmas": ["17", 0],
                "latent_image": ["27", 0],
            },
        },
    }
    prompt["8"]["inputs"]["samples"] = ["13", 0]
    assert np.array_equal(image_of(flux_folders, run(executor, prompt), "9"), reference)


def test_qwen_image_attends_to_a_reference_latent(
    executor: Executor, loom_folders: Folders, tmp_path: Path
) -> None:
    """ComfyUI's Qwen-Image attends to reference latents (the union control LoRA template chains a
    ReferenceLatent): so does Loom's, so the image changes with one and not from run to run."""
    from tests.nodes.flow_fixtures_new import qwen_image_workflow, write_qwen_image_files

    write_qwen_image_files(tmp_path / "models")
    loom_folders.models = Folders.under(tmp_path, models_base=tmp_path / "models").models
    plain = image_of(loom_folders, run(executor, qwen_image_workflow(seed=2)), "60")
    prompt = qwen_image_workflow(seed=2)
    prompt["70"] = {
        "class_type": "ReferenceLatent",
        "inputs": {"conditioning": ["6", 0], "latent": ["58", 0]},
    }
    prompt["3"]["inputs"]["positive"] = ["70", 0]
    guided = image_of(loom_folders, run(executor, prompt), "60")
    assert guided.shape == plain.shape and not np.array_equal(guided, plain)
    assert np.array_equal(guided, image_of(loom_folders, run(executor, prompt), "60"))
