"""ComfyUI's DiT block replacements (`transformer_options["patches_replace"]["dit"]`) on diffusers'
transformers: SkipLayerGuidance and packs replace ("double_block", i) and ("single_block", i).

While the model runs, each patched block's forward is wrapped: the replacement gets ComfyUI's
`args` — `img` (the image stream), `txt` (the text stream, for two-stream blocks), `vec` (the
conditioning vector), `pe` (rotary embeddings), `transformer_options` — and `{"original_block": fn}`,
where `fn(args)` runs the block on `args` and returns `{"img", "txt"}`; what it returns is the block's
output. Families and their block lists: SD3 `transformer_blocks` (double); Flux.1, Flux.2 and Chroma
`transformer_blocks` (double) and `single_transformer_blocks` (single; Flux.2's get text and image as one
sequence in `img`, as ComfyUI's single blocks do); Flux 3 `single_transformer_blocks` (single: its joint
blocks; its per-mode blocks are not addressable); Qwen-Image `transformer_blocks`; Z-Image `layers` (its
single-stream blocks, addressed as "double_block" as in ComfyUI's NextDiT).

`transformer_options["patches"]["double_block"]` (ModelPatcher.set_model_double_block_patch) runs after
every block of the families whose ComfyUI model calls it (0.3.64: Qwen-Image), replacement or not: each
patch gets `{"img", "txt", "x" (the model's input latent), "block_index", "transformer_options"}` and
returns that dict with `img` and `txt` updated (QwenImageDiffsynthControlnet adds its control there).
Z-Image runs them, and the "noise_refiner" patches, with NextDiT's arguments
(engine.diffusion.zimage_block_patches).

`transformer_options["patches"]["post_input"]` (ModelPatcher.set_model_post_input_patch) runs once per
model call on Flux (`post_input_patches`, entered by the Flux model), after the image and text tokens are
embedded and before the position embedding: each patch gets `{"img", "txt", "img_ids", "txt_ids"}` (ids
[B, tokens, 3]) and returns that dict; it may lengthen the text (USOStyleReference prepends its style
tokens with zero ids). On diffusers' Flux the embedders are wrapped for the call: `x_embedder` records the
image tokens, `context_embedder` runs the patches, and `pos_embed` gets the patched ids.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

BLOCK_LISTS = {
    "sd3": {"double_block": "transformer_blocks"},
    "flux": {"double_block": "transformer_blocks", "single_block": "single_transformer_blocks"},
    "flux2": {"double_block": "transformer_blocks", "single_block": "single_transformer_blocks"},
    # Flux 3's joint blocks (text and content streams); its per-mode blocks have no double-block counterpart.
    "flux3": {"single_block": "single_transformer_blocks"},
    "chroma": {"double_block": "transformer_blocks", "single_block": "single_transformer_blocks"},
    "chroma_radiance": {"double_block": "transformer_blocks", "single_block": "single_transformer_blocks"},
    "qwen_image": {"double_block": "transformer_blocks"},
    # Z-Image's main single-stream layers (image and caption tokens together), as ComfyUI's NextDiT.
    "zimage": {"double_block": "layers"},
}
# Families whose ComfyUI model runs the "double_block" patches after each block.
AFTER_BLOCK_FAMILIES = frozenset({"qwen_image"})
_ARGS = {
    "hidden_states": "img",
    "x": "img",
    "encoder_hidden_states": "txt",
    "temb": "vec",
    "adaln_input": "vec",
    "image_rotary_emb": "pe",
    "freqs_cis": "pe",
}


@contextmanager
def dit_patches(
    transformer: Any, family: str, transformer_options: dict[str, Any], x: Any = None
) -> Iterator[None]:
    """Wrap the blocks that have a "dit" replacement, and every block when there are "double_block"
    patches (given `x`, the model's input latent), for the duration of one model call."""
    replacements = transformer_options.get("patches_replace", {}).get("dit", {})
    lists = BLOCK_LISTS.get(family, {})
    wrapped: list[Any] = []
    try:
        for (kind, index), patch in replacements.items():
            blocks = getattr(transformer, lists[kind], None) if kind in lists else None
            if blocks is None or not 0 <= index < len(blocks):
                continue
            block = blocks[index]
            block.forward = _replaced(block.forward, patch, transformer_options)
            wrapped.append(block)
        after = transformer_options.get("patches", {}).get("double_block", [])
        if family == "zimage":
            from engine.diffusion.zimage_block_patches import wrap_zimage_blocks

            wrapped += wrap_zimage_blocks(transformer, transformer_options, x)
        elif after and family in AFTER_BLOCK_FAMILIES:
            for index, block in enumerate(getattr(transformer, lists["double_block"])):
                block.forward = _followed(block.forward, after, index, x, transformer_options)
                wrapped.append(block)
        yield
    finally:
        for block in wrapped:
            if "forward" in vars(block):
                del block.forward  # back to the class's forward


@contextmanager
def post_input_patches(
    transformer: Any, patches: list[Any], img_ids: Any, on_text: Callable[[int], None] | None = None
) -> Iterator[None]:
    """Wrap diffusers' Flux embedders for one call so that the "post_input" patches run between them and
    the position embedding (see the module docstring). `img_ids` [tokens, 3] are the ids the call passes
    (references included); the text ids are zeros, as Flux's. `on_text` hears how many text tokens the
    patches added (an attention mask must grow with them)."""
    import torch

    embed_image, embed_text, embed_positions = (
        transformer.x_embedder,
        transformer.context_embedder,
        transformer.pos_embed,
    )
    state: dict[str, Any] = {}

    def image(hidden: Any) -> Any:
        state["img"] = type(embed_image).forward(embed_image, hidden)
        return state["img"]

    def text(context: Any) -> Any:
        img, txt = state["img"], type(embed_text).forward(embed_text, context)
        batch = img.shape[0]
        args = {
            "img": img,
            "txt": txt,
            "img_ids": img_ids.unsqueeze(0).expand(batch, -1, -1),
            "txt_ids": torch.zeros((batch, txt.shape[1], 3), device=txt.device, dtype=img_ids.dtype),
        }
        for patch in patches:
            args = patch(args)
        if args["img"] is not img:
            if args["img"].shape != img.shape:
                raise ValueError("a Flux post_input patch may not change the number of image tokens")
            img.copy_(args["img"])  # diffusers' forward already holds `img`: update it in place
        state["ids"] = torch.cat([args["txt_ids"][0], args["img_ids"][0]], dim=0)
        if on_text is not None:
            on_text(args["txt"].shape[1] - txt.shape[1])
        return args["txt"]

    def positions(ids: Any) -> Any:
        return type(embed_positions).forward(embed_positions, state.pop("ids", ids).to(ids.device))

    embed_image.forward, embed_text.forward, embed_positions.forward = image, text, positions
    try:
        yield
    finally:
        for module in (embed_image, embed_text, embed_positions):
            if "forward" in vars(module):
                del module.forward


def _followed(
    inner: Callable[..., Any], patches: list[Any], index: int, x: Any, options: dict[str, Any]
) -> Any:
    """`inner` (the block, or its replacement), then each "double_block" patch on its output."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        txt, img = out if isinstance(out, tuple) else (None, out)
        for patch in patches:
            result = patch(
                {"img": img, "txt": txt, "x": x, "block_index": index, "transformer_options": options}
            )
            img, txt = result["img"], result.get("txt", txt)
        return (txt, img) if isinstance(out, tuple) else img

    return forward


def _replaced(original: Callable[..., Any], patch: Callable[..., Any], options: dict[str, Any]) -> Any:
    signature = inspect.signature(original)

    def forward(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        # Blocks given text and image apart return both; Flux.2's single blocks get them as one sequence
        # (encoder_hidden_states None) and return it alone.
        two_streams = bound.arguments.get("encoder_hidden_states") is not None
        shape: list[bool] = []

        def run(block_args: dict[str, Any]) -> dict[str, Any]:
            for name, key in _ARGS.items():
                if name in bound.arguments and key in block_args:
                    bound.arguments[name] = block_args[key]
            out = original(*bound.args, **bound.kwargs)
            shape.append(isinstance(out, tuple))
            return {"txt": out[0], "img": out[1]} if isinstance(out, tuple) else {"img": out}

        given = {key: bound.arguments[name] for name, key in _ARGS.items() if name in bound.arguments}
        result = patch({**given, "transformer_options": options}, {"original_block": run})
        img = result["img"]
        if two_streams:
            return result.get("txt", given.get("txt")), img
        return img

    return forward
