"""Z-Image Fun ControlNet: Loom's patched Z-Image model call against diffusers' ZImageControlNetModel and
ZImageTransformer2DModel on the same tiny weights and inputs.

ComfyUI 0.3.64 predates Z-Image, and newer ComfyUI (whose semantics Loom follows) differs from diffusers'
pipeline in three places: (1) its control layers attend only to the control tokens (diffusers': control tokens
followed by the caption tokens, as one sequence); (2) its hints reach only the image tokens (diffusers' also
the caption tokens); (3) its 2.x refiner hints are added to the model's noise-refiner output (diffusers'
transformer never receives them; they only shape the controlnet's own copy of the image tokens). So each
control file is compared twice:

- "diffusers pipeline": `controlnet(...)` then `transformer(..., controlnet_block_samples=...)`, exactly as
  `ZImageControlNetPipeline` wires them (the differences above show here);
- "ComfyUI wiring": the same diffusers modules (the controlnet's embedder and blocks, the transformer) wired
  as newer ComfyUI's ZImageControlPatch does, by forward hooks on the transformer's layers.

The model is 64 wide with Z-Image's 30 main layers (so the control layers land where they do on the real
model) and 2 refiner layers; a 16×16 latent (64 tokens) and a 32-token caption, so no padding enters. Both
sides get the same control latent (a fixed stand-in "VAE": 8×8 average pooling and a fixed 3 → 16 map; this
bench compares what follows encoding, normalised as Flux latents on both sides).

    OMP_NUM_THREADS=1 .venv/bin/python bench/zimage_fun_parity.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401

STRENGTH = 0.75
SIGMA = 0.6


class _PoolVae:
    """A deterministic stand-in encoder: 8×8 average pooling, then a fixed 3 → 16 channel map."""

    latent_channels = 16

    def __init__(self) -> None:
        import torch

        g = torch.Generator().manual_seed(11)
        self.weight = torch.randn(16, 3, generator=g)
        self.bias = torch.randn(16, generator=g) * 0.1

    def spacial_compression_encode(self) -> int:
        return 8

    def encode(self, pixels: Any) -> Any:
        import torch.nn.functional as F

        pooled = F.avg_pool2d(pixels.movedim(-1, 1).float(), 8)
        return (self.weight @ pooled.flatten(2)).unflatten(2, pooled.shape[-2:]) + self.bias[:, None, None]


def main() -> None:
    import torch

    from engine import folders
    from engine.folders import Folders
    from tests.nodes.flow_fixtures import _save
    from tests.nodes.flow_fixtures_new import tiny_zimage_transformer, zimage_to_comfy

    torch.set_grad_enabled(False)
    transformer = tiny_zimage_transformer(7, cap_dim=32, dim=64, layers=30, refiner_layers=2).float()
    g = torch.Generator().manual_seed(12)
    x = torch.randn(1, 16, 16, 16, generator=g)
    context = torch.randn(1, 32, 32, generator=g)
    image = torch.rand(1, 128, 128, 3, generator=g)
    rows = []
    with tempfile.TemporaryDirectory(prefix="loom-zfun-") as work:
        base = Path(work)
        configured = Folders.under(base)
        _save(base / "models/diffusion_models/z.safetensors", zimage_to_comfy(transformer.state_dict()), None)
        previous = folders.current()
        folders.configure(configured)
        try:
            for version in ("1.0", "2.0", "2.1", "lite"):
                rows.append(_compare(version, base, transformer, x, context, image))
        finally:
            folders.configure(previous)
    print(
        f"{'file':<6} {'control effect':>15} {'uncontrolled':>13} {'Loom - ComfyUI wiring':>22} "
        f"{'Loom - diffusers pipeline':>26}"
    )
    for version, effect, baseline, comfy, pipeline in rows:
        print(f"{version:<6} {effect:>15.3g} {baseline:>13.3g} {comfy:>22.3g} {pipeline:>26.3g}")
    print(
        "(max |difference| of the denoised latent; control effect: Loom controlled - Loom uncontrolled; "
        "uncontrolled: Loom - diffusers, both without control)"
    )
    worst = max(row[3] for row in rows)
    print(
        f"max |Loom - ComfyUI wiring| over the four layouts: {worst:.3g} "
        f"(denoised latent, strength {STRENGTH})"
    )


def _compare(version: str, base: Path, transformer: Any, x: Any, context: Any, image: Any) -> tuple[Any, ...]:
    import torch
    from safetensors.torch import save_file

    from nodes.loaders.model_patch import ModelPatchLoader, QwenImageDiffsynthControlnet
    from nodes.loaders.split import UNETLoader
    from tests.nodes.model_patch_fixtures import zimage_fun_weights

    weights = zimage_fun_weights(20, version, width=64)
    (base / "models/model_patches").mkdir(parents=True, exist_ok=True)
    save_file(weights, str(base / f"models/model_patches/fun_{version}.safetensors"))
    model = UNETLoader().run("z.safetensors", "default")
    patch = ModelPatchLoader().run(f"fun_{version}.safetensors")
    vae = _PoolVae()
    patched = QwenImageDiffsynthControlnet().run(model, patch, vae, image, STRENGTH)
    sigma = torch.tensor([SIGMA])
    with patched.applied() as m:
        options = patched.model_options["transformer_options"]
        loom = m.apply_model(x, sigma, c_crossattn=context, transformer_options=options)
    with model.applied() as m:
        plain = m.apply_model(x, sigma, c_crossattn=context)

    control = patch.layout
    net = _diffusers_controlnet(version, weights, control.layers, control.every, transformer)
    latent = _control_latent(vae, image, control.in_channels)
    pipeline = _denoised(x, _pipeline(net, transformer, x, context, latent))
    comfy = _denoised(x, _comfy_wiring(net, transformer, x, context, latent, control))
    t = network_time()
    reference = _denoised(
        x, transformer([x[0].unsqueeze(1)], t, [context[0]], return_dict=False)[0][0].squeeze(1)[None]
    )
    effect = (loom - plain).abs().max().item()
    baseline = (plain - reference).abs().max().item()
    return version, effect, baseline, (loom - comfy).abs().max().item(), (loom - pipeline).abs().max().item()


def _diffusers_controlnet(
    version: str, weights: dict[str, Any], layers: int, every: int, transformer: Any
) -> Any:
    """ZImageControlNetModel as diffusers' single-file loader configures each release (layers every
    `every` main layers, refiner hints at refiner layers 0 and 1), sharing the transformer's modules."""
    from diffusers.models.controlnets.controlnet_z_image import ZImageControlNetModel

    mode = {
        "1.0": None,
        "2.0": "control_layers",
        "2.1": "control_noise_refiner",
        "lite": "control_noise_refiner",
    }
    net = ZImageControlNetModel(
        control_layers_places=[k * every for k in range(layers)],
        control_refiner_layers_places=[0, 1],
        control_in_dim=33 if version != "1.0" else 16,
        add_control_noise_refiner=mode[version],
        dim=64,
        n_heads=2,
        n_kv_heads=2,
    )
    own = {k: v for k, v in weights.items() if version != "2.0" or not k.startswith("control_noise_refiner.")}
    net.load_state_dict(own)
    return ZImageControlNetModel.from_transformer(net.eval(), transformer)


def _control_latent(vae: Any, image: Any, channels: int) -> Any:
    """The control latent the pipelines build: Flux-normalised control image; for 2.x, then the mask channel
    (zeros: no mask) and the encoded mid-grey inpaint image (ComfyUI's default without one)."""
    import torch

    def encoded(pixels: Any) -> Any:
        return (vae.encode(pixels) - 0.1159) * 0.3611

    scaled = torch.nn.functional.interpolate(image.movedim(-1, 1), size=(128, 128), mode="area").movedim(
        1, -1
    )
    control = encoded(scaled)
    if channels == 16:
        return control
    grey = encoded(torch.full_like(scaled, 0.5))
    return torch.cat([control, torch.zeros_like(control[:, :1]), grey], dim=1)


def _pipeline(net: Any, transformer: Any, x: Any, context: Any, latent: Any) -> Any:
    t = network_time()
    hints = net([x[0].unsqueeze(1)], t, [context[0]], [latent[0].unsqueeze(1)], conditioning_scale=STRENGTH)
    out = transformer([x[0].unsqueeze(1)], t, [context[0]], controlnet_block_samples=hints, return_dict=False)
    return out[0][0].squeeze(1)[None]


def _comfy_wiring(net: Any, transformer: Any, x: Any, context: Any, latent: Any, layout: Any) -> Any:
    """Newer ComfyUI's ZImageControlPatch, written out with hooks on diffusers' transformer (tokens by
    diffusers' own patchify, blocks called directly: nothing of Loom's)."""
    import torch

    count = (x.shape[-2] // 2) * (x.shape[-1] // 2)
    tokens = net.patchify([latent[0].unsqueeze(1)], 2, 1)[0][:count]
    state: dict[str, Any] = {"stream": net.control_all_x_embedder["2-1"](tokens)[None]}

    def run_control_block(block: Any, stream: Any, image: Any, pe: Any, vec: Any) -> tuple[Any, Any]:
        out = block(stream if block.block_id == 0 else stream[None], image, None, pe, vec)
        return out[-2], out[-1]

    def add(out: Any, hint: Any) -> Any:
        return torch.cat([out[:, :count] + STRENGTH * hint, out[:, count:]], dim=1)

    def refiner(index: int) -> Any:
        def hook(module: Any, args: Any, out: Any) -> Any:
            pe, vec = args[2][:, :count], args[3]
            if index == 0:
                state["refiner_input"] = args[0][:, :count]
                if layout.refiner == "plain":
                    for block in net.control_noise_refiner:
                        state["stream"] = block(state["stream"], None, pe, vec)
            stage = []
            if layout.refiner == "control":
                stage = [net.control_noise_refiner[index]]
            elif layout.refiner == "broken":
                stage = list(net.control_layers[:1] if index == 0 else net.control_layers[1:])
            hints = []
            for block in stage:
                hint, state["stream"] = run_control_block(
                    block, state["stream"], state["refiner_input"], pe, vec
                )
                hints.append(hint)
            return add(out, hints[0]) if hints else out

        return hook

    def layer(index: int) -> Any:
        def hook(module: Any, args: Any, out: Any) -> Any:
            if index == 0:
                state["layer_input"] = args[0][:, :count]
            if index % layout.every or index // layout.every >= layout.layers:
                return out
            block = net.control_layers[index // layout.every]
            hint, state["stream"] = run_control_block(
                block, state["stream"], state["layer_input"], args[2][:, :count], args[3]
            )
            return add(out, hint)

        return hook

    handles = [b.register_forward_hook(refiner(i)) for i, b in enumerate(transformer.noise_refiner)]
    handles += [b.register_forward_hook(layer(i)) for i, b in enumerate(transformer.layers)]
    try:
        t = network_time()
        out = transformer([x[0].unsqueeze(1)], t, [context[0]], return_dict=False)
    finally:
        for handle in handles:
            handle.remove()
    return out[0][0].squeeze(1)[None]


def network_time() -> Any:
    """The network's time 1 - sigma, computed in float32 from sigma as Loom and ComfyUI compute it."""
    import torch

    return 1.0 - torch.tensor([SIGMA])


def _denoised(x: Any, out: Any) -> Any:
    """Z-Image predicts x0 - noise; ComfyUI samples it as AuraFlow: denoised = x - sigma × (-out)."""
    return x + SIGMA * out


if __name__ == "__main__":
    main()
