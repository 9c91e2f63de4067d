"""Write a random-weight SD1.5-layout checkpoint that ComfyUI detects as SD1.5, for side-by-side benches.

ComfyUI recognises SD1.5 only by a UNet with model_channels 320 and context_dim 768 next to a full-size
CLIP-L text encoder and VAE (docs: FACTS.md). The UNet's depth and levels are read from shapes, so this
one is as small as that allows: two levels (320, 320), one ResNet and one transformer per block, 8 heads.
CLIP-L and the VAE keep their real sizes with random weights. Saved in fp16 (about 430 MB); nothing is
downloaded. Run: `python bench/make_comfy_sd15.py OUT.safetensors [--seed 0] [--channels 320,640]`.
`--channels 320,640` makes the second level 640 wide, so that FreeU's model_channels*2 branch acts on
it (with the default 320,320 FreeU changes nothing).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine.models.save import save_single_file


def build(seed: int, channels: tuple[int, int] = (320, 320)) -> tuple[object, object, object]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        block_out_channels=list(channels),
        layers_per_block=1,
        down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
        up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
        cross_attention_dim=768,
        attention_head_dim=8,
        norm_num_groups=32,
    )
    vae = AutoencoderKL(
        block_out_channels=[128, 256, 512, 512],
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=32,
        sample_size=512,
        scaling_factor=0.18215,
    )
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=49408,
            hidden_size=768,
            intermediate_size=3072,
            num_hidden_layers=12,
            num_attention_heads=12,
            max_position_embeddings=77,
            hidden_act="quick_gelu",
            projection_dim=768,
            bos_token_id=49406,
            eos_token_id=49407,
            pad_token_id=49407,
        )
    )
    # Random init leaves the UNet's zero-initialised output convs at 0 (it would predict no noise at
    # all); small random values everywhere make every layer matter.
    with torch.no_grad():
        for module in (unet, vae):
            for param in module.parameters():
                if param.ndim == 1 and bool((param == 0).all()):
                    param.normal_(0, 0.02)
        unet.conv_out.weight.normal_(0, 0.02)
    return unet.eval(), vae.eval(), clip.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", default="320,320", help="the two levels' widths (320 first)")
    args = parser.parse_args()
    first, second = (int(c) for c in args.channels.split(","))
    unet, vae, clip = build(args.seed, (first, second))
    path = save_single_file(args.out, unet, vae, [clip], "sd1", dtype=torch.float16)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
