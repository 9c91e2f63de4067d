"""Token windows → conditioning, for one text encoder (ComfyUI's `encode_token_weights`).

All windows of a prompt are encoded in one batch. If any token is weighted, the empty prompt is encoded
alongside and each weighted token is pushed away from (or toward) it at the same position:
z = (z - z_empty) * weight + z_empty; tokens of weight 1 are left exactly as encoded. Embedding vectors
replace the token embeddings at their positions. SD1.x and SD2.x read a hidden layer through the final
layer norm; SDXL's encoders read the penultimate layer without it. The flow families' encoders are
read by role (`ROLE_OPTIONS`): SD3's CLIP-L and CLIP-G at the penultimate layer, Flux's CLIP-L at its
output, T5-XXL (no start token, `</s>` then `<pad>`) at its final output with no pooled vector.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger("loom.embeddings")
# Placeholder id where an embedding vector goes; any id but the end token keeps pooling right.
EMBEDDING_SLOT_ID = 0


@dataclass(frozen=True)
class EncoderOptions:
    """How one encoder is read: its default layer, whether a hidden layer goes through the final norm,
    and whether the pooled output is projected."""

    default_layer: int | None  # None: the final output
    norm_hidden: bool
    projected_pooled: bool = True
    # The empty prompt that weights push from: CLIP's start and end tokens; T5 has no start token.
    start_id: int | None = 49406
    end_id: int = 49407
    # T5 has no pooled output (the flow families pool from CLIP).
    pooled: bool = True
    # T5 is always read at its final output; clip skip (CLIPSetLastLayer) does not apply to it.
    fixed_layer: bool = False
    # Flux.2's text encoders: these hidden states (inputs of those layers) side by side per token, with
    # padding masked out of the attention.
    layers: tuple[int, ...] = ()
    # Lumina 2 (ComfyUI's Gemma, no end token): from a window's first padding token on, the tokens are
    # masked out of the attention; the empty prompt weights push from is start + padding.
    mask_from_pad: bool = False
    # Flux 3: every padding token at this rotary position (diffusers' pipeline passes 1, transformers
    # 4.57's numbering, which the model was trained with); None numbers the padding on.
    padding_position: int | None = None
    # HiDream's T5 and Llama: padding is masked out of the attention (ComfyUI's attention_mask=True).
    mask_padding: bool = False


ENCODER_OPTIONS: dict[str, tuple[EncoderOptions, ...]] = {
    "sd1": (EncoderOptions(None, True, projected_pooled=False),),
    "sd2": (EncoderOptions(-2, True),),
    "sdxl": (EncoderOptions(-2, False), EncoderOptions(-2, False)),
    "sdxl_refiner": (EncoderOptions(-2, False),),
}
# The flow families (SD3, Flux) by encoder role, since a CLIP of theirs may hold any subset of them.
T5_OPTIONS = EncoderOptions(
    None, False, projected_pooled=False, start_id=None, end_id=1, pooled=False, fixed_layer=True
)
ROLE_OPTIONS: dict[str, dict[str, EncoderOptions]] = {
    "sd3": {
        "clip_l": EncoderOptions(-2, False, projected_pooled=False),
        "clip_g": EncoderOptions(-2, False),
        "t5xxl": T5_OPTIONS,
    },
    "flux": {"clip_l": EncoderOptions(None, True, projected_pooled=False), "t5xxl": T5_OPTIONS},
    "chroma": {"t5xxl": T5_OPTIONS},
    # Qwen text encoders (no start token, no pooled vector): Z-Image reads Qwen3's penultimate layer,
    # Qwen-Image Qwen2.5-VL's final, normalised output.
    "zimage": {"qwen3_4b": EncoderOptions(-2, False, False, None, 151643, pooled=False)},
    "qwen_image": {"qwen25_7b": EncoderOptions(None, False, False, None, 151643, pooled=False)},
    # Lumina 2: Gemma 2's penultimate layer, unnormalised; start token 2, no end token (pad 0 stands in).
    "lumina2": {"gemma2_2b": EncoderOptions(-2, False, False, 2, 0, pooled=False, mask_from_pad=True)},
    # Flux.2: Klein's Qwen3 at layers 9, 18, 27, dev's Mistral Small 3 at 10, 20, 30 (ComfyUI's and
    # diffusers' choice), read without the final norm; fixed, as ComfyUI's.
    "flux2": {
        "qwen3_4b": EncoderOptions(None, False, False, None, 151643, False, True, (9, 18, 27)),
        "qwen3_8b": EncoderOptions(None, False, False, None, 151643, False, True, (9, 18, 27)),
        "mistral3_24b": EncoderOptions(None, False, False, 1, 2, False, True, (10, 20, 30)),
    },
    # Qwen-Image 2.1: Qwen3-VL's last layer before its final norm (the encoder leaves the norm out).
    "qwen_image21": {"qwen3vl_8b": EncoderOptions(None, False, False, None, 151643, pooled=False)},
    # HiDream: CLIP-L's and CLIP-G's projected pooled vectors, T5 with its padding masked; the Llama
    # states are read by engine.diffusion.clip_hidream.
    "hidream": {
        "clip_l": EncoderOptions(None, True),
        "clip_g": EncoderOptions(-2, False),
        "t5xxl": replace(T5_OPTIONS, mask_padding=True),
        "llama3_8b": EncoderOptions(
            None, False, False, 128000, 128009, pooled=False, fixed_layer=True, mask_padding=True
        ),
    },
    # Flux 3: Qwen3-VL 4B's hidden states entering layers 4, 8, …, 32 (diffusers' Flux 3 encoder step).
    "flux3": {
        "qwen3vl_4b": EncoderOptions(
            None, False, False, None, 151643, False, True, (4, 8, 12, 16, 20, 24, 28, 32), padding_position=1
        )
    },
}


def encoder_options(family: str, roles: tuple[str, ...], index: int) -> EncoderOptions:
    """How encoder `index` of a CLIP is read: by role for the flow families, by position otherwise."""
    if roles:
        return ROLE_OPTIONS[family][roles[index]]
    return ENCODER_OPTIONS[family][index]


def encode_token_weights(
    encoder: Any,
    options: EncoderOptions,
    pad_id: int,
    windows: list[list[tuple[Any, ...]]],
    layer: int | None,
    unprojected: bool,
    device: Any,
) -> tuple[Any, Any]:
    """(cond [1, tokens, width] float32, pooled [1, dim] or None) of an encoder's token windows."""
    import torch

    from engine.diffusion import llm_images

    positions = None
    if llm_images.has_images(windows):  # Qwen-Image Edit: the vision tower's tokens and their positions
        windows, positions = llm_images.expand(encoder, windows)
    weighted = any(pair[1] != 1.0 for window in windows for pair in window)
    batch = [list(window) for window in windows]
    if weighted or not batch:
        length = max((len(w) for w in windows), default=0)
        special = [t for t in (options.start_id, options.end_id) if t is not None]
        empty_ids = special + [pad_id] * max(length - len(special), 0)
        batch.append([(token, 1.0) for token in empty_ids])
    if positions is not None and len(batch) > positions.shape[1]:
        positions = llm_images.with_plain_rows(positions, len(batch) - positions.shape[1])
    ids, slots = _ids_and_slots(batch, encoder, pad_id)
    extra = {} if positions is None else {"position_ids": positions.to(device)}
    if options.mask_from_pad:
        extra["attention_mask"] = mask_from_pad(batch, pad_id, len(ids[0])).to(device)
    if options.layers or options.mask_padding:
        extra["attention_mask"] = padding_mask(ids, pad_id).to(device)
        if options.padding_position is not None and "position_ids" not in extra:
            mask = extra["attention_mask"]
            numbered = torch.arange(mask.shape[1], device=device).expand(mask.shape[0], -1)
            extra["position_ids"] = numbered.masked_fill(mask == 0, options.padding_position)
    with torch.no_grad(), _embeddings_in(encoder, slots):
        hidden, pooled = _run(encoder, options, torch.tensor(ids, device=device), layer, unprojected, extra)
    hidden = hidden.float()
    sections = len(windows)
    if weighted:
        empty = hidden[-1]
        weights = torch.tensor([[pair[1] for pair in w] for w in windows], dtype=torch.float32)
        weights = weights.to(hidden.device).unsqueeze(-1)
        body = hidden[:sections]
        hidden = torch.where(weights != 1.0, (body - empty) * weights + empty, body)
    cond = hidden[:sections] if sections else hidden[-1:]
    cond = cond.reshape(1, -1, cond.shape[-1]).cpu()
    return cond, None if pooled is None else pooled[:1].float().cpu()


def _ids_and_slots(batch: list[list[tuple[Any, ...]]], encoder: Any, pad_id: int) -> tuple[list, list]:
    """Integer ids per window, and (window, position, vector) for every embedding vector in them."""
    width = encoder.get_input_embeddings().weight.shape[-1]
    ids: list[list[int]] = []
    slots: list[tuple[int, int, Any]] = []
    for row, window in enumerate(batch):
        row_ids: list[int] = []
        dropped = 0
        for pair in window:
            token = pair[0]
            if isinstance(token, int):
                row_ids.append(int(token))
            elif token.shape[-1] != width:
                log.warning(
                    "WARNING: shape mismatch when trying to apply embedding, embedding will be ignored "
                    "%s != %s",
                    token.shape[-1],
                    width,
                )
                dropped += 1
            else:
                slots.append((row, len(row_ids), token.reshape(-1)))
                row_ids.append(EMBEDDING_SLOT_ID)
        ids.append(row_ids + [pad_id] * dropped)
    return ids, slots


@contextmanager
def _embeddings_in(encoder: Any, slots: list[tuple[int, int, Any]]) -> Iterator[None]:
    """Swap embedding vectors in for the placeholder tokens while the encoder runs."""
    if not slots:
        yield
        return

    def replace(_module: Any, _inputs: Any, output: Any) -> Any:
        output = output.clone()
        for row, position, vector in slots:
            output[row, position] = vector.to(output.device, output.dtype)
        return output

    handle = encoder.get_input_embeddings().register_forward_hook(replace)
    try:
        yield
    finally:
        handle.remove()


def _run(
    encoder: Any,
    options: EncoderOptions,
    ids: Any,
    layer: int | None,
    unprojected: bool,
    extra: dict[str, Any] | None = None,
) -> tuple:
    import torch

    out = encoder(input_ids=ids, output_hidden_states=True, **(extra or {}))
    if options.layers:
        return _stacked_layers(out.hidden_states, options.layers), None
    text_model = getattr(encoder, "text_model", encoder)
    layers = len(out.hidden_states) - 1
    chosen = layer if layer is not None else options.default_layer
    if options.fixed_layer:
        chosen = None
    if chosen is None or abs(chosen) > layers:
        hidden = out.last_hidden_state  # ComfyUI reads the final, normalised output then
    else:
        hidden = out.hidden_states[chosen]
        if options.norm_hidden:
            hidden = text_model.final_layer_norm(hidden)
    if not options.pooled:
        return hidden, None
    projected = getattr(out, "text_embeds", None)
    if projected is not None and options.projected_pooled and not unprojected:
        return hidden, projected
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:  # a projection model: pool the final output at the first end token
        end = (ids == 49407).int().argmax(dim=-1)
        pooled = out.last_hidden_state[torch.arange(ids.shape[0], device=ids.device), end]
    return hidden, pooled


def mask_from_pad(batch: list[list[tuple[Any, ...]]], pad_id: int, length: int) -> Any:
    """1 for each token before a window's first padding token, 0 from it on, over `length` ids (ComfyUI's
    mask for encoders without an end token); embedding vectors are never padding."""
    import torch

    rows = []
    for window in batch:
        pads = (i for i, pair in enumerate(window) if isinstance(pair[0], int) and pair[0] == pad_id)
        first = next(pads, len(window))
        rows.append([1] * first + [0] * (length - first))
    return torch.tensor(rows, dtype=torch.long)


def padding_mask(ids: list[list[int]], pad_id: int) -> Any:
    """1 for each token, 0 for the padding runs at either end of a window (ComfyUI pads Klein's prompt to
    512 tokens at the end and Flux.2 dev's Mistral prompt at the start)."""
    import torch

    rows = []
    for row in ids:
        real = [i for i, token in enumerate(row) if token != pad_id]
        first, last = (real[0], real[-1]) if real else (0, -1)
        rows.append([1 if first <= i <= last else 0 for i in range(len(row))])
    return torch.tensor(rows, dtype=torch.long)


def _stacked_layers(hidden_states: tuple[Any, ...], layers: tuple[int, ...]) -> Any:
    """The inputs of `layers` side by side per token ([B, L, len(layers)·width]); `hidden_states[i]` is
    the input of layer i (the last entry, the normalised output, is never one of them)."""
    import torch

    depth = len(hidden_states) - 1
    if max(layers) >= depth:
        raise ValueError(
            f"this text encoder has {depth} layers, but its family reads the hidden states of layers "
            f"{', '.join(map(str, layers))}: load the complete file "
            "(Flux.2: Qwen3 or Mistral, Flux 3: Qwen3-VL)"
        )
    return torch.cat([hidden_states[i] for i in layers], dim=-1)
