"""ComfyUI's NextDiT patch points on diffusers' Z-Image transformer: `transformer_options["patches"]`
"noise_refiner" (after each of the image's noise-refiner layers) and "double_block" (after each main layer).

Each patch gets ComfyUI's dict and returns it, with `img` (and, for main layers, `txt`) replaced where it
changes them; a patch that edits `img` in place and drops the key (ComfyUI's ZImageControlPatch does) works
too, since `img` is a view of the layer's output:

- noise_refiner: `img` (the refiner's output image tokens, padded to a multiple of 32), `img_input` (the
  tokens that entered refiner layer 0), `txt` (None: diffusers refines the caption after the image; ComfyUI
  passes the refined caption, which its control patch does not read), `pe` (the image tokens' rotary
  frequencies, diffusers' complex form), `vec` (the timestep embedding), `x` (the model's input latent),
  `block_index`, `transformer_options`, `block_type` = "noise_refiner".
- double_block: `img` / `txt` (the image and caption parts of the joint sequence after the layer), `img_input`
  (the image part that entered main layer 0), `pe` (the image part's frequencies), `vec`, `x`,
  `block_index`, `transformer_options`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

SEQUENCE_MULTIPLE = 32  # Z-Image pads the image and caption token runs to multiples of 32


def wrap_zimage_blocks(transformer: Any, options: dict[str, Any], x: Any) -> list[Any]:
    """Wrap the refiner and main layers that have patches to run; returns the wrapped modules."""
    patches = options.get("patches", {})
    refiner_patches, layer_patches = patches.get("noise_refiner", []), patches.get("double_block", [])
    shared: dict[str, Any] = {}
    wrapped = []
    if refiner_patches:
        for index, block in enumerate(transformer.noise_refiner):
            block.forward = _after_refiner(block.forward, refiner_patches, index, x, options, shared)
            wrapped.append(block)
    if layer_patches:
        count = image_token_count(x)
        for index, block in enumerate(transformer.layers):
            block.forward = _after_layer(block.forward, layer_patches, index, x, options, shared, count)
            wrapped.append(block)
    return wrapped


def image_token_count(x: Any) -> int:
    """The image's tokens in the joint sequence: 2×2 patches of the latent, padded to a multiple of 32."""
    tokens = (-(-int(x.shape[-2]) // 2)) * (-(-int(x.shape[-1]) // 2))
    return tokens + (-tokens) % SEQUENCE_MULTIPLE


def _inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(tokens, rotary frequencies, timestep embedding) of a Z-Image block call."""
    names = ("x", "attn_mask", "freqs_cis", "adaln_input")
    given = dict(zip(names, args, strict=False)) | kwargs
    return given["x"], given.get("freqs_cis"), given.get("adaln_input")


def _after_refiner(
    inner: Callable[..., Any],
    patches: list[Any],
    index: int,
    x: Any,
    options: dict[str, Any],
    shared: dict[str, Any],
) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        tokens, pe, vec = _inputs(args, kwargs)
        if index == 0:
            shared["refiner_input"] = tokens
        img = inner(*args, **kwargs)
        for patch in patches:
            result = patch(
                {
                    "img": img,
                    "img_input": shared.get("refiner_input", tokens),
                    "txt": None,
                    "pe": pe,
                    "vec": vec,
                    "x": x,
                    "block_index": index,
                    "transformer_options": options,
                    "block_type": "noise_refiner",
                }
            )
            img = result.get("img", img)
        return img

    return forward


def _after_layer(
    inner: Callable[..., Any],
    patches: list[Any],
    index: int,
    x: Any,
    options: dict[str, Any],
    shared: dict[str, Any],
    count: int,
) -> Any:
    def forward(*args: Any, **kwargs: Any) -> Any:
        import torch

        tokens, pe, vec = _inputs(args, kwargs)
        if index == 0:
            shared["layer_input"] = tokens[:, :count]
        out = inner(*args, **kwargs)
        img, txt = out[:, :count], out[:, count:]
        for patch in patches:
            result = patch(
                {
                    "img": img,
                    "img_input": shared.get("layer_input", tokens[:, :count]),
                    "txt": txt,
                    "pe": None if pe is None else pe[:, :count],
                    "vec": vec,
                    "x": x,
                    "block_index": index,
                    "transformer_options": options,
                }
            )
            img, txt = result.get("img", img), result.get("txt", txt)
        return torch.cat([img, txt], dim=1)

    return forward
