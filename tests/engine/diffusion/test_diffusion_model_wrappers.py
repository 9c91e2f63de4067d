"""DIFFUSION_MODEL wrappers around the flow transformers whose ComfyUI models run them (Flux.1, Flux.2 and
Flux 3 through one call, Chroma, Lumina 2 and Z-Image through another, Qwen-Image, HiDream):
called with the arguments of ComfyUI's `forward` for that model, and what they return is the
prediction. (SD1.x UNets: tests/packs/test_diffusion_model_wrapper.py, through the node API.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from tests.nodes.flow_fixtures import write_flux_files
from tests.nodes.flow_fixtures_new import write_chroma_files, write_zimage_files


@pytest.fixture(scope="module")
def flow_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flow_models")
    write_flux_files(root)
    write_chroma_files(root)
    return root


class Scale:
    """A wrapper scaling the prediction; records the positional arguments it got."""

    def __init__(self, scale: float) -> None:
        self.scale = scale
        self.args: list[Any] = []

    def __call__(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        self.args = list(args)
        assert executor.class_obj is not None and not kwargs
        return executor(*args) * self.scale


def denoise(
    model: Any, wrapper: Scale | None, channels: int = 16, **cond: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(1, channels, 8, 8)
    options: dict[str, Any] = {}
    if wrapper is not None:
        options["wrappers"] = {"diffusion_model": {"test": [wrapper]}}
    sigma = torch.tensor([0.6])
    with torch.no_grad():
        return x, model.apply_model(x, sigma, transformer_options=options, **cond)


def check_scaling(model: Any, channels: int = 16, **cond: Any) -> Scale:
    """With a prediction scaled by s, denoised = x - sigma * s * v = (1 - s) * x + s * denoised."""
    x, plain = denoise(model, None, channels, **cond)
    wrapper = Scale(0.5)
    _, scaled = denoise(model, wrapper, channels, **cond)
    assert torch.allclose(scaled, 0.5 * x + 0.5 * plain, atol=1e-5)
    assert not torch.allclose(scaled, plain, atol=1e-3)
    return wrapper


def test_flux_wrapper_gets_comfyuis_flux_forward_arguments(flow_files: Path) -> None:
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(flow_files / "diffusion_models" / "flux1-dev.safetensors").model
    context, pooled = torch.randn(1, 7, 192), torch.randn(1, 64)
    added = {"pooled": pooled, "guidance": torch.tensor([3.5])}
    wrapper = check_scaling(model, c_crossattn=context, added_cond_kwargs=added)
    # ComfyUI's Flux.forward(x, timestep, context, y, guidance, ref_latents, control, transformer_options)
    x, timestep, ctx, y, guidance, ref_latents, control, options = wrapper.args
    assert x.shape == (1, 16, 8, 8) and timestep.shape == (1,) and float(timestep[0]) == pytest.approx(0.6)
    assert ctx.shape == (1, 7, 192) and torch.equal(y, pooled) and float(guidance[0]) == 3.5
    assert ref_latents is None and control is None and "wrappers" in options


def test_chroma_wrapper_gets_comfyuis_chroma_forward_arguments(flow_files: Path) -> None:
    from engine.models.flow_families import load_diffusion_model

    path = flow_files / "diffusion_models" / "chroma-unlocked-v35.safetensors"
    model = load_diffusion_model(path).model
    width = model.diffusion_model.config.joint_attention_dim
    wrapper = check_scaling(model, c_crossattn=torch.randn(1, 5, width))
    # ComfyUI's Chroma.forward(x, timestep, context, guidance, control, transformer_options)
    x, timestep, context, guidance, control, options = wrapper.args
    assert x.shape == (1, 16, 8, 8) and timestep.shape == (1,) and context.shape == (1, 5, width)
    assert torch.equal(guidance, torch.zeros(1)) and control is None and "wrappers" in options


@pytest.fixture(scope="module")
def newer_flux_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.nodes.flux2_fixtures import write_klein_files
    from tests.nodes.flux3_fixtures import write_files

    root = tmp_path_factory.mktemp("newer_flux_models")
    write_klein_files(root)
    write_files(root)
    return root


@pytest.mark.parametrize(
    "name", ["flux-2-klein-4b.safetensors", "flux3-image-klein-base-int8-convrot.safetensors"]
)
def test_flux2_and_flux3_wrappers_get_the_same_flux_forward_arguments(
    newer_flux_files: Path, name: str
) -> None:
    """Flux.2 and Flux 3 run the wrappers with Flux.1's arguments: no pooled vector, and the reference
    latents of the conditioning."""
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(newer_flux_files / "diffusion_models" / name).model
    width = model.diffusion_model.config.joint_attention_dim
    reference = torch.randn(1, 128, 4, 4)
    added = model.added_conditions([{"reference_latents": [reference]}], torch.zeros(1, 128, 8, 8), 1)
    wrapper = check_scaling(model, 128, c_crossattn=torch.randn(1, 6, width), added_cond_kwargs=added)
    x, timestep, context, y, guidance, ref_latents, control, options = wrapper.args
    assert x.shape == (1, 128, 8, 8) and float(timestep[0]) == pytest.approx(0.6) and context.shape[1] == 6
    assert y is None and control is None and "wrappers" in options
    assert (guidance is None) == name.startswith("flux3")
    assert len(ref_latents) == 1 and ref_latents[0].shape == reference.shape


class Recording:
    """A wrapper halving the prediction; records positional and keyword arguments (ComfyUI's NextDiT passes
    its own five positionally, transformer_options and control by keyword)."""

    def __init__(self) -> None:
        self.args: list[Any] = []
        self.kwargs: dict[str, Any] = {}

    def __call__(self, executor: Any, *args: Any, **kwargs: Any) -> Any:
        self.args, self.kwargs = list(args), dict(kwargs)
        assert executor.class_obj is not None
        return executor(*args, **kwargs) * 0.5


def _nextdit_files(root: Path, family: str) -> Path:
    if family == "lumina2":
        from tests.nodes.lumina2_fixtures import write_lumina2_files

        write_lumina2_files(root)
        return root / "diffusion_models" / "lumina_2_model_bf16.safetensors"
    write_zimage_files(root)
    return root / "diffusion_models" / "z_image_turbo_bf16.safetensors"


@pytest.mark.parametrize("family", ["lumina2", "zimage"])
def test_nextdit_wrapper_gets_comfyuis_nextdit_forward_arguments(tmp_path: Path, family: str) -> None:
    """ComfyUI's NextDiT (Lumina 2 in 0.3.64, Z-Image too in newer ComfyUI) runs the DIFFUSION_MODEL
    wrappers around its forward."""
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(_nextdit_files(tmp_path, family)).model
    context = torch.randn(1, 6, model.context_width())
    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor([0.6])
    wrapper = Recording()
    wrapped = {"wrappers": {"diffusion_model": {"test": [wrapper]}}}
    with torch.no_grad():
        plain = model.apply_model(x, sigma, c_crossattn=context, transformer_options={})
        scaled = model.apply_model(x, sigma, c_crossattn=context, transformer_options=wrapped)
    assert torch.allclose(scaled, 0.5 * x + 0.5 * plain, atol=1e-4)
    # ComfyUI's NextDiT.forward(x, timesteps, context, num_tokens, attention_mask, **kwargs)
    x_in, timesteps, ctx, num_tokens, attention_mask = wrapper.args
    assert x_in.shape == (1, 16, 8, 8) and float(timesteps[0]) == pytest.approx(0.6)
    assert ctx.shape == (1, 6, model.context_width()) and num_tokens == 6 and attention_mask is None
    assert wrapper.kwargs["control"] is None and "wrappers" in wrapper.kwargs["transformer_options"]


def test_qwen_image_wrapper_gets_comfyuis_qwen_forward_arguments(tmp_path: Path) -> None:
    """ComfyUI 0.3.64's Qwen-Image runs the DIFFUSION_MODEL wrappers around its forward: (x, timestep,
    context, attention_mask, guidance, ref_latents, transformer_options), control and the reference
    method by keyword."""
    from engine.models.flow_families import load_diffusion_model
    from tests.nodes.flow_fixtures_new import write_qwen_image_files

    write_qwen_image_files(tmp_path)
    model = load_diffusion_model(tmp_path / "diffusion_models" / "qwen_image_bf16.safetensors").model
    reference = torch.randn(1, 16, 4, 4)
    entry = {"reference_latents": [reference], "reference_latents_method": "index"}
    added = model.added_conditions([entry], torch.zeros(1, 16, 8, 8), 1)
    context = torch.randn(1, 5, model.context_width())
    torch.manual_seed(0)
    x, sigma = torch.randn(1, 16, 8, 8), torch.tensor([0.6])
    wrapper = Recording()
    wrapped = {"wrappers": {"diffusion_model": {"test": [wrapper]}}}
    with torch.no_grad():
        plain = model.apply_model(x, sigma, c_crossattn=context, added_cond_kwargs=added)
        scaled = model.apply_model(
            x, sigma, c_crossattn=context, added_cond_kwargs=added, transformer_options=wrapped
        )
    assert torch.allclose(scaled, 0.5 * x + 0.5 * plain, atol=1e-4)
    x_in, timestep, ctx, attention_mask, guidance, ref_latents, options = wrapper.args
    assert x_in.shape == (1, 16, 8, 8) and float(timestep[0]) == pytest.approx(0.6) and ctx.shape[1] == 5
    assert attention_mask is None and guidance is None and "wrappers" in options
    assert len(ref_latents) == 1 and ref_latents[0].shape == reference.shape
    assert wrapper.kwargs == {"control": None, "ref_latents_method": "index"}


def test_hidream_wrapper_gets_comfyuis_hidream_forward_arguments(tmp_path: Path) -> None:
    """ComfyUI 0.3.64's HiDream runs the wrappers with (x, t, y, context, encoder_hidden_states_llama3,
    image_cond, control, transformer_options): t is sigma × 1000, y the pooled CLIP-L + CLIP-G vector."""
    from engine.models.flow_families import load_diffusion_model
    from tests.nodes.hidream_fixtures import write_hidream_files

    write_hidream_files(tmp_path)
    model = load_diffusion_model(tmp_path / "diffusion_models" / "hidream_i1_dev_bf16.safetensors").model
    config = model.diffusion_model.config
    t5_width, llama_width = config.caption_channels
    entry = {
        "pooled_output": torch.randn(1, config.text_emb_dim),
        "conditioning_llama3": torch.randn(1, 3, 4, llama_width),
    }
    added = model.added_conditions([entry], torch.zeros(1, 16, 8, 8), 1)
    wrapper = check_scaling(model, c_crossattn=torch.randn(1, 7, t5_width), added_cond_kwargs=added)
    x, t, y, context, llama, image_cond, control, options = wrapper.args
    assert x.shape == (1, 16, 8, 8) and float(t[0]) == pytest.approx(600.0) and context.shape[1] == 7
    assert torch.equal(y, entry["pooled_output"].to(y.dtype)) and llama.shape == (1, 3, 4, llama_width)
    assert image_cond is None and control is None and "wrappers" in options
