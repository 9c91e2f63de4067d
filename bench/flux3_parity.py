"""Loom's Flux 3 (Klein) against diffusers' own on the same tiny random weights.

No ComfyUI on this machine knows Flux 3, so the reference is diffusers 0.42.1:
* the model call: Loom's MODEL loaded from a file in Black Forest Labs' layout (ComfyUI's), once plain and
  once with the block matrices in int8 ConvRot, against `Flux3Transformer2DModel.forward` holding the same
  (dequantised) weights, called with the position ids diffusers' Flux 3 pipeline makes (image rows and
  columns at half scale, the n-th reference at l = -n, text along l), for the base model and the distilled
  flow map (target timestep = the next sigma of the schedule), with and without reference latents;
* the conditioning: Loom's CLIP (CLIPLoader type flux3 on a Qwen3-VL-layout file) against diffusers'
  `Flux3TextEncoderStep._get_qwen3_vl_prompt_embeds` run on transformers' `Qwen3VLTextModel` holding the
  same weights, with Loom's Qwen vocabulary and Qwen3-VL's user-turn chat template standing in for the
  Qwen3-VL processor (so the template itself is not what is checked: the padding to 80, the padding's
  positions and mask, and the eight stacked layers are);
* the sigmas: Loom's KSampler schedule (`simple`, shift 6.93) against diffusers' pipeline
  (`FlowMatchEulerDiscreteScheduler(shift=6.93)` over `linspace(1, 1/N, N)`).

    OMP_NUM_THREADS=1 .venv/bin/python bench/flux3_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401  (before diffusers: torchvision shim)


def _ids(rows: int, cols: int, l_coord: int) -> object:
    import torch

    ids = torch.cartesian_prod(
        torch.arange(1), torch.arange(rows), torch.arange(cols), torch.tensor([l_coord])
    )
    ids = ids.float()
    ids[:, 1:3] *= 0.5
    return ids


def transformer_rows(work: Path) -> list[tuple[str, float, float]]:
    import torch
    from diffusers.loaders.single_file_utils import convert_flux3_transformer_checkpoint_to_diffusers
    from safetensors.torch import load_file, save_file

    from engine.models import flow_families
    from engine.models.int8_convrot import dequantised
    from tests.nodes.flux3_fixtures import BLOCK_MATRICES, flux3_to_comfy, tiny_transformer
    from tests.nodes.qwen21_fixtures import quantise_convrot

    rows = []
    schedule = torch.tensor([1.0, 0.8, 0.55, 0.3, 0.0])
    for flow_map in (False, True):
        plain = flux3_to_comfy(tiny_transformer(9, flow_map).state_dict())
        for label, state in (("plain", plain), ("int8 ConvRot", quantise_convrot(plain, 16, BLOCK_MATRICES))):
            path = work / f"{label.split()[0]}_{flow_map}.safetensors"
            save_file({k: v.clone() for k, v in state.items()}, str(path))
            patcher = flow_families.load_diffusion_model(path)
            reference = tiny_transformer(0, flow_map)
            weights = {k: v.float() for k, v in dequantised(load_file(str(path)), torch.float32).items()}
            reference.load_state_dict(convert_flux3_transformer_checkpoint_to_diffusers(weights))
            for height, width, text, refs in (
                (3, 4, 80, []),
                (5, 6, 160, [(4, 4)]),
                (4, 4, 80, [(2, 3), (3, 5)]),
            ):
                torch.manual_seed(height * 10 + width)
                x, context = torch.randn(1, 128, height, width), torch.randn(1, text, 128)
                ref_latents = [torch.randn(1, 128, r, c) for r, c in refs]
                sigma = torch.tensor([0.55])
                extra = patcher.model.added_conditions([{"reference_latents": ref_latents}], x, 1)
                options = {"sample_sigmas": schedule}
                with torch.no_grad():
                    denoised = patcher.model.apply_model(
                        x, sigma, c_crossattn=context, transformer_options=options, added_cond_kwargs=extra
                    )
                    cond = {}
                    if refs:
                        cond = {
                            "image_cond_hidden_states": torch.cat(
                                [r.flatten(2).transpose(1, 2) for r in ref_latents], 1
                            ),
                            "image_cond_ids": torch.cat(
                                [_ids(r, c, -(1 + i)) for i, (r, c) in enumerate(refs)]
                            ),
                        }
                    txt_ids = torch.zeros(text, 4)
                    txt_ids[:, 3] = torch.arange(text)
                    velocity = reference(
                        hidden_states=x.flatten(2).transpose(1, 2),
                        encoder_hidden_states=context,
                        timestep=sigma,
                        img_ids=_ids(height, width, 0),
                        txt_ids=txt_ids,
                        target_timestep=torch.tensor([0.3]) if flow_map else None,
                        return_dict=False,
                        **cond,
                    )[0]
                expected = x - 0.55 * velocity.transpose(1, 2).reshape(1, 128, height, width)
                kind = "distilled" if flow_map else "base"
                name = f"{kind}, {label}, {height}x{width}, {text} text tokens, {len(refs)} references"
                rows.append((name, float((denoised - expected).abs().max()), float(expected.abs().max())))
    return rows


class _Processor:
    """What diffusers' encoder step needs of Qwen3-VL's processor: its chat template and tokenizer."""

    def __init__(self) -> None:
        from engine.models.tokenizer import qwen

        self.tokenizer = qwen.tokenizer()
        self.tokenizer.pad_token = "<|endoftext|>"

    def apply_chat_template(self, messages: list[dict[str, str]], **_: object) -> str:
        return f"<|im_start|>user\n{messages[0]['content']}<|im_end|>\n<|im_start|>assistant\n"


def conditioning_rows(work: Path) -> list[tuple[str, float, float]]:
    import torch
    from diffusers.modular_pipelines.flux3.encoders import Flux3TextEncoderStep
    from transformers import Qwen3VLTextConfig, Qwen3VLTextModel

    from engine.models.flow_families import load_clip
    from engine.models.qwen3vl_vision import mrope_section
    from tests.nodes.flux3_fixtures import TEXT, write_files

    made = write_files(work)
    clip = load_clip([work / "text_encoders" / TEXT], "flux3")
    weights = {k.removeprefix("model."): v for k, v in made["text"].state_dict().items()}
    config = made["text"].config
    theirs = Qwen3VLTextModel(
        Qwen3VLTextConfig(
            vocab_size=config.vocab_size,
            hidden_size=config.hidden_size,
            intermediate_size=config.intermediate_size,
            num_hidden_layers=config.num_hidden_layers,
            num_attention_heads=config.num_attention_heads,
            num_key_value_heads=config.num_key_value_heads,
            head_dim=config.head_dim,
            rms_norm_eps=config.rms_norm_eps,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5_000_000.0,
                "mrope_section": mrope_section(config.head_dim),
                "mrope_interleaved": True,
            },
        )
    ).eval()
    theirs.config._attn_implementation = "sdpa"
    missing = theirs.load_state_dict(
        {k: v.float() for k, v in _dequantised_file(work / "text_encoders" / TEXT).items() if k in weights},
        strict=False,
    )
    rows = []
    for prompt in (
        "a red fox in snow",
        "A close-up photograph of a red fox standing in fresh snow at sunrise. " * 6,
    ):
        ours = clip.encode_from_tokens(clip.tokenize(prompt))
        with torch.no_grad():
            reference = Flux3TextEncoderStep._get_qwen3_vl_prompt_embeds(theirs, _Processor(), prompt)
        label = f"conditioning, {reference.shape[1]} tokens"
        if ours.shape != reference.shape:
            rows.append((f"{label}: Loom's shape {tuple(ours.shape)}", float("inf"), 0.0))
            continue
        rows.append(
            (label, float((ours.float() - reference.float()).abs().max()), float(reference.abs().max()))
        )
    if missing.missing_keys:
        rows.append((f"(reference lacks {len(missing.missing_keys)} weights)", float("nan"), 0.0))
    return rows


def _dequantised_file(path: Path) -> dict[str, object]:
    import torch
    from safetensors.torch import load_file

    from engine.models.int8_convrot import dequantised

    return {k.removeprefix("model."): v for k, v in dequantised(load_file(str(path)), torch.float32).items()}


def sigma_rows() -> list[tuple[str, float, float]]:
    import numpy as np
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler

    from engine.models.flow_families import FLUX3_SHIFT
    from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow
    from engine.sampling.schedulers import calculate_sigmas

    rows = []
    for steps in (4, 16, 50):
        loom = calculate_sigmas(ModelSamplingDiscreteFlow(shift=FLUX3_SHIFT, multiplier=1.0), "simple", steps)
        scheduler = FlowMatchEulerDiscreteScheduler(shift=FLUX3_SHIFT)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps))
        theirs = scheduler.sigmas.float()
        rows.append(
            (f"sigmas, {steps} steps", float((loom.float() - theirs).abs().max()), float(theirs.max()))
        )
    del torch
    return rows


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = transformer_rows(Path(tmp)) + conditioning_rows(Path(tmp) / "te") + sigma_rows()
    width = max(len(r[0]) for r in rows)
    print(f"{'comparison':<{width}}  max |Loom - diffusers|  max |diffusers|")
    for name, diff, scale in rows:
        print(f"{name:<{width}}  {diff:>21.3g}  {scale:>16.3g}")


if __name__ == "__main__":
    main()
