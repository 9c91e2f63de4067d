"""The full recipe behind models/checkpoints/loom_default.safetensors: data → VAE → text encoder + UNet.

    python -m training.recipe --out models/checkpoints/loom_default.safetensors

Stages are time-boxed (wall clock), so the result depends on the machine's speed; the log records steps.
`--vae` reuses a VAE state dict saved by an earlier run (it is written to `<work>/vae.pt`).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from engine.diffusion.latent_formats import RGB_METADATA_KEY
from engine.models.save import save_single_file

from .dataset import make_scenes, to_tensor
from .models import build_vae, count_parameters
from .train_diffusion import DiffusionConfig, train_diffusion
from .train_vae import encode, finetune_decoder, latent_rgb, train_vae


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("models/checkpoints/loom_default.safetensors"))
    parser.add_argument("--work", type=Path, default=Path("artifacts/train"))
    parser.add_argument("--scenes", type=int, default=30000, help="rendered training scenes")
    parser.add_argument("--two-object-prob", type=float, default=0.15)
    parser.add_argument("--vae-scenes", type=int, default=8000)
    parser.add_argument("--vae-minutes", type=float, default=20.0)
    parser.add_argument("--vae-batch-size", type=int, default=32)
    parser.add_argument("--vae", type=Path, help="reuse this VAE state dict instead of training one")
    parser.add_argument("--vae-init", type=Path, help="continue training this VAE state dict")
    parser.add_argument("--vae-lr", type=float, default=1e-3)
    parser.add_argument("--decoder-minutes", type=float, default=20.0, help="decoder-only fine-tuning")
    parser.add_argument("--minutes", type=float, default=53.0, help="text encoder + UNet training time")
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--high-noise-frac", type=float, default=0.3)
    parser.add_argument("--min-snr", type=float, default=5.0, help="0 turns min-SNR weighting off")
    parser.add_argument("--high-noise-weight-cap", type=float, default=5.0)
    parser.add_argument("--pure-noise-frac", type=float, default=0.15)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    log_file = (args.work / "loss_log.txt").open("a")

    def log(message: str) -> None:
        log_file.write(f"{time.strftime('%H:%M:%S')} {message}\n")
        log_file.flush()

    log(f"recipe {vars(args)}")
    if args.vae is not None:
        vae = build_vae()
        vae.load_state_dict(torch.load(args.vae))
        vae.eval().requires_grad_(False)
    else:
        vae_data = make_scenes(args.vae_scenes, args.seed + 1, args.two_object_prob)
        init = torch.load(args.vae_init) if args.vae_init else None
        vae = train_vae(vae_data, args.vae_minutes, args.vae_batch_size, args.vae_lr, log=log, init=init)
        vae = finetune_decoder(vae, vae_data, args.decoder_minutes, batch_size=args.vae_batch_size)
        torch.save(vae.state_dict(), args.work / "vae.pt")
    data = make_scenes(args.scenes, args.seed + 2, args.two_object_prob)
    latents = encode(vae, to_tensor(data.images))
    log(f"latents {tuple(latents.shape)} mean {latents.mean():.3f} std {latents.std():.3f}")
    config = DiffusionConfig(
        minutes=args.minutes,
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        high_noise_frac=args.high_noise_frac,
        min_snr=args.min_snr or None,
        high_noise_weight_cap=args.high_noise_weight_cap,
        pure_noise_frac=args.pure_noise_frac,
        seed=args.seed,
    )
    trained = train_diffusion(latents, data.scenes, config, log=log)
    sizes = {
        "unet": count_parameters(trained.unet),
        "text_encoder": count_parameters(trained.text_encoder),
        "vae": count_parameters(vae),
    }
    log(f"trained {trained.steps} steps in {trained.seconds:.0f}s; parameters {sizes}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "loom.recipe": json.dumps(
            {"steps": trained.steps, "seconds": round(trained.seconds), **vars(args)}, default=str
        ),
        "loom.image_size": "64",
        RGB_METADATA_KEY: json.dumps(latent_rgb(vae, to_tensor(data.images[:2000]))),
    }
    save_single_file(
        args.out, trained.unet, vae, [trained.text_encoder], "sd1", metadata=metadata, dtype=torch.float16
    )
    log(f"saved {args.out}")
    return args.out


if __name__ == "__main__":
    main()
