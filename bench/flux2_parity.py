"""Flux.2, Loom against diffusers' own Flux.2 pipeline components on the same tiny random weights.

ComfyUI 0.3.64 predates Flux.2, so the reference here is diffusers 0.42.1's `Flux2KleinPipeline` /
`Flux2Pipeline` code: its latent ids, text ids, reference-image ids (`_prepare_image_ids`, frame 10·n),
packing and unpacking, the transformer call, `_get_qwen3_prompt_embeds` (Qwen3 hidden states 9, 18, 27
over the 512-token padded chat prompt), the VAE's patchify + batch-norm encode and its inverse on decode,
and the scheduler's exponential time shift with the empirical mu. Loom's side goes through its loaders
(UNETLoader / CLIPLoader / VAELoader code paths) from files in ComfyUI's layouts
(tests/nodes/flux2_fixtures.py); diffusers' side runs the same weights rounded as the files store them.

The tokens are the same on both sides (Loom's Qwen vocabulary, with Klein's template given to diffusers as
the tokenizer's chat template): ComfyUI tokenizes `<think>` as text (its Qwen2.5 vocabulary), as Loom does,
where the released Qwen3 tokenizer has it as one token.

    OMP_NUM_THREADS=1 .venv/bin/python bench/flux2_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import engine  # noqa: E402,F401  (torchvision compatibility before transformers)

# Klein's chat turn (Qwen3 with enable_thinking=False) as a Jinja chat template for the tokenizer.
KLEIN_CHAT = (  # the generation prompt as a string literal: Jinja drops a template's final newline
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{{ '<|im_start|>assistant\\n<think>\\n\\n</think>\\n\\n' }}"
)
CASES = [("text to image, 3×4 tokens", (3, 4), []), ("edit, two references", (4, 4), [(2, 3), (4, 4)])]


def _as_stored(module: Any, dtype: Any) -> Any:
    """A float32 copy of `module` with its weights rounded to the dtype the stand-in file stores them in,
    so both sides start from the same numbers."""
    import copy

    import torch

    rounded = copy.deepcopy(module).float()
    with torch.no_grad():
        for parameter in rounded.parameters():
            parameter.copy_(parameter.to(dtype).float())
    return rounded


def _pipeline() -> Any:
    from diffusers.pipelines.flux2.pipeline_flux2_klein import Flux2KleinPipeline

    return Flux2KleinPipeline


def model_rows(root: Path, made: dict[str, Any]) -> list[tuple[str, float]]:
    import torch

    from engine.models.flow_families import load_diffusion_model

    pipe = _pipeline()
    model = load_diffusion_model(root / "diffusion_models" / "flux-2-klein-4b.safetensors").model
    rows = []
    for name, (height, width), references in CASES:
        torch.manual_seed(0)
        x = torch.randn(1, 128, height, width)
        context = torch.randn(1, 512, 96)
        refs = [torch.randn(1, 128, h, w) for h, w in references]
        sigma = 0.7
        with torch.no_grad():
            extra = model.added_conditions([{"reference_latents": refs}], x, 1)
            denoised = model.apply_model(
                x, torch.tensor([sigma]), c_crossattn=context, added_cond_kwargs=extra
            )
            ours = (x - denoised) / sigma
            tokens, ids = pipe._pack_latents(x), pipe._prepare_latent_ids(x)
            if refs:
                ref_ids = pipe._prepare_image_ids(refs)
                ref_tokens = torch.cat([pipe._pack_latents(r) for r in refs], dim=1)
                tokens, all_ids = torch.cat([tokens, ref_tokens], dim=1), torch.cat([ids, ref_ids], dim=1)
            else:
                all_ids = ids
            out = _as_stored(made["transformer"], torch.float16)(
                hidden_states=tokens,
                encoder_hidden_states=context,
                timestep=torch.tensor([sigma]),
                img_ids=all_ids,
                txt_ids=pipe._prepare_text_ids(context),
                guidance=None,
                return_dict=False,
            )[0][:, : height * width]
            theirs = pipe._unpack_latents_with_ids(out, ids)
        rows.append((f"model call: {name}", float((ours - theirs).abs().max())))
    return rows


def text_rows(root: Path, made: dict[str, Any]) -> list[tuple[str, float]]:
    import torch

    from engine.models.flow_families import load_clip
    from engine.models.tokenizer import qwen

    tokenizer = qwen.tokenizer()
    tokenizer.chat_template = KLEIN_CHAT
    clip = load_clip([root / "text_encoders" / "qwen_3_4b.safetensors"], "flux2", device="cpu")
    rows = []
    for prompt in ("a red circle on white", "Une forêt, 3 renards; 猫!"):
        ours = clip.encode_from_tokens(clip.tokenize(prompt))
        encoder = _as_stored(made["text"].model, torch.bfloat16)
        with torch.no_grad():
            theirs = _pipeline()._get_qwen3_prompt_embeds(encoder, tokenizer, prompt, dtype=torch.float32)
        rows.append((f"Qwen3 conditioning {prompt!r}", float((ours - theirs).abs().max())))
    return rows


def vae_rows(root: Path, made: dict[str, Any]) -> list[tuple[str, float]]:
    import torch

    from engine.diffusion.vae import vae_from_state_dict
    from engine.models.files import open_state_dict

    pipe = _pipeline()
    rows = []
    for name, key in (("flux2-vae", "vae"), ("full_encoder_small_decoder", "small_vae")):
        state, _ = open_state_dict(root / "vae" / f"{name}.safetensors")
        vae = vae_from_state_dict(dict(state), {}, name)
        reference = made[key]
        torch.manual_seed(1)
        image = torch.rand(1, 64, 48, 3)
        with torch.no_grad():
            ours = vae.encode(image)
            raw = reference.encode(image.movedim(-1, 1) * 2 - 1).latent_dist.mode()
            patched = pipe._patchify_latents(raw)
            mean = reference.bn.running_mean.view(1, -1, 1, 1)
            std = torch.sqrt(reference.bn.running_var.view(1, -1, 1, 1) + reference.config.batch_norm_eps)
            theirs = (patched - mean) / std
            rows.append((f"VAE encode ({name})", float((ours - theirs).abs().max())))
            decoded = vae.decode(theirs)
            expected = reference.decode(pipe._unpatchify_latents(theirs * std + mean)).sample
            expected = ((expected + 1) / 2).clamp(0, 1).movedim(1, -1)
            rows.append((f"VAE decode ({name})", float((decoded - expected).abs().max())))
    return rows


def schedule_rows() -> list[tuple[str, float]]:
    import numpy as np
    import torch
    from diffusers import FlowMatchEulerDiscreteScheduler
    from diffusers.pipelines.flux2.pipeline_flux2_klein import compute_empirical_mu

    from engine.sampling.flux2_schedule import flux2_sigmas

    rows = []
    for steps, size in ((4, 1024), (20, 1024), (50, 2048)):
        scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
        tokens = (size // 16) ** 2
        mu = compute_empirical_mu(image_seq_len=tokens, num_steps=steps)
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
        ours = flux2_sigmas(steps, size, size)
        rows.append(
            (f"Flux2Scheduler {steps} steps at {size}²", float((ours - scheduler.sigmas).abs().max()))
        )
    del torch
    return rows


def main() -> None:
    from tests.nodes.flux2_fixtures import write_klein_files

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        made = write_klein_files(root)
        rows = model_rows(root, made) + text_rows(root, made) + vae_rows(root, made) + schedule_rows()
    width = max(len(name) for name, _ in rows)
    print(f"{'comparison'.ljust(width)}  max |Loom - diffusers|")
    for name, diff in rows:
        print(f"{name.ljust(width)}  {diff:.3g}")
    print(f"\nlargest difference: {max(d for _, d in rows):.3g} over {len(rows)} comparisons")


if __name__ == "__main__":
    main()
