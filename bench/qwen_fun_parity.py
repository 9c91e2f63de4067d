"""Qwen-Image Fun ControlNet: Loom's controlled Qwen-Image model call against a reference built on diffusers'
QwenImageTransformer2DModel, on the same tiny weights and inputs.

Newer ComfyUI (whose semantics Loom follows; 0.3.64 predates the file) and alibaba-pai's VideoX-Fun run the
control blocks on the main model's own embeddings: the first control block takes
`before_proj(control_img_in(hint)) + img_in(x)` with the main model's text stream, timestep embedding and
rotary positions; each block's `after_proj` output is added to the main model's image tokens after main
block 0, 12, 24, 36, 48, times the strength. The reference re-expresses that with hooks on diffusers'
transformer: a pre-hook on its first block takes the block's actual inputs (the embedded image and text, the
timestep embedding, the rotary positions: the reference does not recompute them), runs the control blocks
(fresh diffusers blocks loaded from the file's tensors, with their own projections) and keeps the hints;
forward hooks on the injection blocks add them. The hint latent is packed by the reference's own
reshape (VideoX-Fun's: control latent, then zero mask and zero inpaint channels, 2×2 patches).

The model is 128 wide (one head) with Qwen-Image's 60 blocks so every injection layer exists; a 16×16
latent (64 tokens), a 32-token prompt 32 wide. Both sides get the same control latent (a fixed stand-in
"VAE": 8×8 average pooling and a fixed 3 → 16 map, normalised as Wan 2.1 latents on both sides).

    OMP_NUM_THREADS=1 .venv/bin/python bench/qwen_fun_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401
from bench.zimage_fun_parity import _PoolVae  # noqa: E402

STRENGTH = 0.75
SIGMA = 0.6
INJECT = (0, 12, 24, 36, 48)


def main() -> None:
    import torch

    from engine import folders
    from engine.folders import Folders
    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import tiny_qwen_image_transformer

    torch.set_grad_enabled(False)
    transformer = tiny_qwen_image_transformer(7, context=32, layers=60).float()
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 16, 16, 16, generator=g)
    context = torch.randn(1, 32, 32, generator=g)
    image = torch.rand(1, 128, 128, 3, generator=g)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loom-qfun-") as work:
        base = Path(work)
        _save(base / "models/diffusion_models/q.safetensors", transformer.state_dict(), None)
        previous = folders.current()
        folders.configure(Folders.under(base))
        try:
            for blocks in (5, 3):
                rows.append(_compare(blocks, transformer, x, context, image))
        finally:
            folders.configure(previous)
    print(f"{'control blocks':<15} {'control effect':>15} {'uncontrolled':>13} {'Loom - reference':>17}")
    for blocks, effect, baseline, diff in rows:
        print(f"{blocks:<15} {effect:>15.3g} {baseline:>13.3g} {diff:>17.3g}")
    print(
        "(max |difference| of the denoised latent; control effect: Loom controlled - Loom uncontrolled; "
        f"uncontrolled: Loom - diffusers, both without control; strength {STRENGTH}, sigma {SIGMA})"
    )


def _compare(blocks: int, transformer: Any, x: Any, context: Any, image: Any) -> tuple[Any, ...]:
    import torch

    from engine.models.controlnet_flow import load_flow_controlnet
    from nodes.loaders.split import UNETLoader
    from tests.nodes.flow_controlnet_fixtures import qwen_fun_controlnet

    weights = qwen_fun_controlnet(seed=20 + blocks, width=128, blocks=blocks)
    model = UNETLoader().run("q.safetensors", "default")
    vae = _PoolVae()
    control = load_flow_controlnet("qwen_fun", dict(weights)).copy()
    control.set_cond_hint(image.movedim(-1, 1), STRENGTH, (0.0, 1.0), vae=vae)
    sigma = torch.tensor([SIGMA])
    with model.applied() as m:
        control.pre_run(m, lambda percent: 1.0 - percent)
        residuals = control.get_control(x, sigma, {"c_crossattn": context}, 1)
        loom = m.apply_model(x, sigma, c_crossattn=context, control=residuals)
        plain = m.apply_model(x, sigma, c_crossattn=context)
        control.cleanup()

    latent = _wan21_in(_encode(vae, image))
    reference = _denoised(x, _reference(weights, blocks, transformer, x, context, latent))
    uncontrolled = _denoised(x, _call(transformer, x, context))
    return (
        blocks,
        (loom - plain).abs().max().item(),
        (plain - uncontrolled).abs().max().item(),
        (loom - reference).abs().max().item(),
    )


def _encode(vae: Any, image: Any) -> Any:
    return vae.encode(image)


def _wan21_in(latent: Any) -> Any:
    """Wan 2.1's latent normalisation (the published per-channel means and stds)."""
    import torch

    from engine.diffusion.latent_formats_flow import WAN21_MEAN, WAN21_STD

    mean = torch.tensor(WAN21_MEAN).view(1, 16, 1, 1)
    std = torch.tensor(WAN21_STD).view(1, 16, 1, 1)
    return (latent - mean) / std


def _pack_hint(latent: Any) -> Any:
    """VideoX-Fun's control input: [control latent, zero mask, zero inpaint latent], 2×2 patches."""
    import torch

    hint = torch.cat([latent, torch.zeros_like(latent[:, :1]), torch.zeros_like(latent)], dim=1)
    b, c, h, w = hint.shape
    hint = hint.view(b, c, 1, h // 2, 2, w // 2, 2).permute(0, 2, 3, 5, 1, 4, 6)
    return hint.reshape(b, (h // 2) * (w // 2), c * 4)


def _reference(
    weights: dict[str, Any], count: int, transformer: Any, x: Any, context: Any, latent: Any
) -> Any:
    import torch
    from diffusers.models.transformers.transformer_qwenimage import QwenImageTransformerBlock

    control_in = torch.nn.Linear(132, 128)
    control_in.load_state_dict({k[len("control_img_in.") :]: v for k, v in weights.items() if "img_in" in k})
    control_blocks, before, after = [], torch.nn.Linear(128, 128), []
    for index in range(count):
        prefix = f"control_blocks.{index}."
        mine = {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}
        block = QwenImageTransformerBlock(dim=128, num_attention_heads=1, attention_head_dim=128)
        block.load_state_dict({k: v for k, v in mine.items() if "_proj." not in k or "attn" in k})
        projection = torch.nn.Linear(128, 128)
        projection.load_state_dict(
            {k[len("after_proj.") :]: v for k, v in mine.items() if k.startswith("after_proj.")}
        )
        control_blocks.append(block.eval())
        after.append(projection)
        if index == 0:
            before.load_state_dict(
                {k[len("before_proj.") :]: v for k, v in mine.items() if k.startswith("before_proj.")}
            )
    hints: list[Any] = []

    def start(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        image, text = kwargs["hidden_states"], kwargs["encoder_hidden_states"]
        state = before(control_in(_pack_hint(latent))) + image
        for block, projection in zip(control_blocks, after, strict=True):
            text, state = block(
                hidden_states=state,
                encoder_hidden_states=text,
                encoder_hidden_states_mask=None,
                temb=kwargs["temb"],
                image_rotary_emb=kwargs["image_rotary_emb"],
            )
            hints.append(projection(state) * STRENGTH)

    def add(index: int) -> Any:
        def hook(module: Any, args: Any, out: Any) -> Any:
            return out[0], out[1] + hints[index]

        return hook

    handles = [transformer.transformer_blocks[0].register_forward_pre_hook(start, with_kwargs=True)]
    handles += [
        transformer.transformer_blocks[layer].register_forward_hook(add(i))
        for i, layer in enumerate(INJECT[:count])
    ]
    try:
        return _call(transformer, x, context)
    finally:
        for handle in handles:
            handle.remove()


def _call(transformer: Any, x: Any, context: Any) -> Any:
    """diffusers' transformer on the packed latent at timestep sigma; the prediction unpacked."""
    import torch

    b, c, h, w = x.shape
    tokens = x.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5).reshape(b, h * w // 4, c * 4)
    out = transformer(
        hidden_states=tokens,
        encoder_hidden_states=context,
        timestep=torch.tensor([SIGMA]),
        img_shapes=[[(1, h // 2, w // 2)]],
        return_dict=False,
    )[0]
    return out.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(b, c, h, w)


def _denoised(x: Any, out: Any) -> Any:
    """Flow prediction: denoised = x - sigma × out."""
    return x - SIGMA * out


if __name__ == "__main__":
    main()
