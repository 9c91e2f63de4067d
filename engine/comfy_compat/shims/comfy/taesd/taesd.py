"""ComfyUI's comfy.taesd.taesd building blocks of the Tiny AutoEncoder (TAESD), which packs reuse to
build their own tiny decoders: `conv`, `Clamp`, `Block`, and the `Encoder` / `Decoder` networks with
ComfyUI's layer order, so TAESD state dicts load into them. They are Loom's own networks
(engine/diffusion/taesd.py, which also draws TAESD previews); ComfyUI's `TAESD` wrapper class
(paths, scale/shift) is not provided.
"""

from __future__ import annotations

from engine.diffusion.taesd import Block, Clamp, Decoder, Encoder, conv

__all__ = ["Block", "Clamp", "Decoder", "Encoder", "conv"]
