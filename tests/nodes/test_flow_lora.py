"""LoRAs on the flow transformers in the key formats ComfyUI reads: reference layout (fused qkv, Flux's
linear1, swapped scale/shift; `diffusion_model.` and kohya `lora_unet_` names) and diffusers / PEFT
layout (`transformer.` names). A reference-layout LoRA applied through the loader gives the same weights
as the LoRA baked into the file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.nodes.flow_fixtures import flux_to_comfy, sd3_to_comfy, tiny_flux_transformer, tiny_sd3_transformer

RANK = 4


def _lora(state: dict[str, torch.Tensor], bases: list[str], seed: int) -> dict[str, tuple[torch.Tensor, ...]]:
    torch.manual_seed(seed)
    out = {}
    for base in bases:
        rows, cols = state[base + ".weight"].shape
        out[base] = (torch.randn(rows, RANK) * 0.1, torch.randn(RANK, cols) * 0.1, torch.tensor(2.0))
    return out


def _baked(
    state: dict[str, torch.Tensor], lora: dict[str, tuple[torch.Tensor, ...]], strength: float
) -> dict:
    baked = dict(state)
    for base, (up, down, alpha) in lora.items():
        baked[base + ".weight"] = state[base + ".weight"] + strength * (alpha / RANK) * (up @ down)
    return baked


def _file(lora: dict[str, tuple[torch.Tensor, ...]], name: str) -> dict[str, torch.Tensor]:
    out = {}
    for base, (up, down, alpha) in lora.items():
        key = name.format(base=base, flat=base.replace(".", "_"))
        out[key + ".lora_up.weight"], out[key + ".lora_down.weight"], out[key + ".alpha"] = up, down, alpha
    return out


def _weights(
    path: Path, lora_state: dict[str, torch.Tensor] | None, strength: float
) -> dict[str, torch.Tensor]:
    from engine.diffusion.handles import lora_for_models
    from engine.models.flow_families import load_diffusion_model

    model = load_diffusion_model(path)
    if lora_state is not None:
        model, _ = lora_for_models(lora_state, model, None, strength, 0.0)
    with model.applied() as applied:
        return {k: v.detach().clone() for k, v in applied.state_dict().items()}


CASES = {
    "flux": (
        lambda: flux_to_comfy(tiny_flux_transformer(seed=2).state_dict(), 1, 1),
        [
            "double_blocks.0.img_attn.qkv",
            "double_blocks.0.txt_mlp.0",
            "single_blocks.0.linear1",
            "final_layer.adaLN_modulation.1",
        ],
    ),
    "sd3": (
        lambda: sd3_to_comfy(tiny_sd3_transformer(seed=2).state_dict(), 2),
        [
            "joint_blocks.0.x_block.attn.qkv",
            "joint_blocks.1.context_block.adaLN_modulation.1",
            "context_embedder",
        ],
    ),
}


@pytest.mark.parametrize("family", sorted(CASES))
@pytest.mark.parametrize("name", ["diffusion_model.{base}", "lora_unet_{flat}"])
def test_reference_layout_lora_equals_the_baked_file(tmp_path: Path, family: str, name: str) -> None:
    make, bases = CASES[family]
    state = make()
    lora = _lora(state, bases, seed=7)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "base.safetensors"))
    save_file(
        {k: v.contiguous() for k, v in _baked(state, lora, 0.8).items()}, str(tmp_path / "baked.safetensors")
    )
    patched = _weights(tmp_path / "base.safetensors", _file(lora, name), 0.8)
    baked = _weights(tmp_path / "baked.safetensors", None, 1.0)
    plain = _weights(tmp_path / "base.safetensors", None, 1.0)
    changed = [k for k in plain if not torch.equal(plain[k], baked[k])]
    assert changed and all(torch.allclose(patched[k], baked[k], atol=1e-5) for k in plain)


def test_diffusers_layout_lora_applies_by_name(tmp_path: Path) -> None:
    from engine.diffusion.handles import lora_for_models
    from engine.models.flow_families import load_diffusion_model

    state = flux_to_comfy(tiny_flux_transformer(seed=2).state_dict(), 1, 1)
    save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / "flux.safetensors"))
    model = load_diffusion_model(tmp_path / "flux.safetensors")
    weight = model.unet.get_parameter("transformer_blocks.0.attn.to_k.weight")
    up, down = torch.randn(weight.shape[0], RANK), torch.randn(RANK, weight.shape[1])
    lora = {
        "transformer.transformer_blocks.0.attn.to_k.lora_B.weight": up,
        "transformer.transformer_blocks.0.attn.to_k.lora_A.weight": down,
    }
    before = weight.detach().clone()
    patched, _ = lora_for_models(lora, model, None, 1.0, 0.0)
    with patched.applied() as applied:
        after = applied.state_dict()["diffusion_model.transformer_blocks.0.attn.to_k.weight"].clone()
    assert torch.allclose(after, before + up @ down, atol=1e-5)
    assert torch.equal(weight, before)  # restored once the patcher is done
