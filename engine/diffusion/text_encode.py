"""CLIPTextEncode's core: prompt → (conditioning tensor, pooled output) for SD1.x, SD2.x and SDXL.

Each 75-token chunk is encoded in its own 77-token window and the windows are concatenated along the
sequence. Weighted tokens are pushed away from (or toward) the empty prompt's encoding at the same
position: z = (z - z_empty) * weight + z_empty, as ComfyUI does. SD1.x and SD2.x read a hidden
layer through the final layer norm; SDXL reads the penultimate layer of both encoders without it and
pools from the second encoder.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.devices import manager
from engine.diffusion.handles import ClipHandle
from engine.diffusion.patches import applied
from engine.diffusion.prompt_weights import CHUNK_TOKENS, Token, weighted_chunks
from engine.models.tokenizer import BOS_ID, EOS_ID, encode

DEFAULT_LAYER = {"sd1": -1, "sd2": -2, "sdxl": -2, "sdxl_refiner": -2, "sd3": -2, "flux": -1}


def encode_prompt(clip: ClipHandle, text: str | list[str]) -> tuple[Any, Any]:
    """(cond [1, 77·chunks, width], pooled [1, dim]). `text` may give one prompt per encoder (SDXL)."""
    import torch

    if clip.roles:
        from engine.diffusion.text_encode_flow import encode_flow_prompt

        prompts = (
            {r: text for r in clip.roles}
            if isinstance(text, str)
            else dict(zip(clip.roles, text, strict=False))
        )
        return encode_flow_prompt(clip, prompts)
    texts = [text] * len(clip.encoders) if isinstance(text, str) else text
    per_encoder = [weighted_chunks(t, encode) for t in texts]
    count = max(len(chunks) for chunks in per_encoder)
    device = manager().use(*clip.encoders)
    with torch.no_grad(), applied(clip.encoders, clip.patches):
        outputs = [
            _encode_chunks(clip, i, chunks + [[]] * (count - len(chunks)), device)
            for i, chunks in enumerate(per_encoder)
        ]
    cond = torch.cat([c for c, _ in outputs], dim=-1)
    pooled = outputs[-1][1]
    return cond.float().cpu(), pooled.float().cpu() if pooled is not None else None


def _window(chunk: list[Token], pad_id: int) -> tuple[list[int], list[float]]:
    ids = [BOS_ID, *(t for t, _ in chunk), EOS_ID]
    weights = [1.0, *(w for _, w in chunk), 1.0]
    padding = CHUNK_TOKENS + 2 - len(ids)
    return ids + [pad_id] * padding, weights + [1.0] * padding


def _encode_chunks(clip: ClipHandle, index: int, chunks: list[list[Token]], device: Any) -> tuple[Any, Any]:
    import torch

    windows = [_window(chunk, clip.pad_ids[index]) for chunk in chunks]
    weighted = any(w != 1.0 for _, weights in windows for w in weights)
    ids = [w for w, _ in windows] + ([_window([], clip.pad_ids[index])[0]] if weighted else [])
    hidden, pooled = _run_encoder(clip, index, torch.tensor(ids, device=device))
    if weighted:
        empty, hidden = hidden[-1:], hidden[:-1]
        scale = torch.tensor([w for _, w in windows], device=device, dtype=hidden.dtype).unsqueeze(-1)
        hidden = (hidden - empty) * scale + empty
    return hidden.reshape(1, -1, hidden.shape[-1]), None if pooled is None else pooled[:1]


def _run_encoder(clip: ClipHandle, index: int, ids: Any) -> tuple[Any, Any]:
    encoder = clip.encoders[index]
    layer = clip.layer if clip.layer is not None else DEFAULT_LAYER[clip.family]
    out = encoder(input_ids=ids, output_hidden_states=True)
    hidden = out.hidden_states[layer]
    if clip.family in ("sd1", "sd2"):
        final_norm = getattr(encoder, "text_model", encoder).final_layer_norm
        hidden = final_norm(hidden)
    pooled = getattr(out, "text_embeds", None)
    if pooled is None:
        pooled = getattr(out, "pooler_output", None)
    return hidden, pooled
