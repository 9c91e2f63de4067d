"""Text conditioning of the flow-matching families: SD3 (CLIP-L + CLIP-G + T5-XXL) and Flux (CLIP-L + T5-XXL).

As ComfyUI composes it:
* SD3: CLIP-L's and CLIP-G's penultimate hidden states side by side, zero-padded to T5's width, then
  T5's sequence appended; pooled = CLIP-L's pooler output (unprojected) next to CLIP-G's projected one.
  A missing encoder is left out (its pooled part is zeros).
* Flux: the cond is T5's output (prompts padded to 256 tokens), the pooled vector CLIP-L's pooler output.
T5 prompts get `</s>` and `<pad>` up to the family's minimum length and are never cut; weights
`(word:1.2)` apply to T5 as to CLIP: z = (z - z_empty) * w + z_empty.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.devices import manager
from engine.diffusion.handles import ClipHandle
from engine.diffusion.patches import applied
from engine.diffusion.prompt_weights import weighted_chunks
from engine.diffusion.text_encode import _encode_chunks
from engine.models.tokenizer import encode as clip_encode
from engine.models.tokenizer import t5

FLOW_FAMILIES = ("sd3", "flux")
T5_MIN_LENGTH = {"sd3": 77, "flux": 256}
# ComfyUI's fixed widths for encoders that are absent (CLIP-L 768, CLIP-G 1280, T5-XXL 4096).
CLIP_L_WIDTH, CLIP_G_WIDTH, T5_WIDTH = 768, 1280, 4096


def encode_flow_prompt(clip: ClipHandle, texts: dict[str, str]) -> tuple[Any, Any]:
    """(cond, pooled) for an SD3 or Flux CLIP from one prompt per role (`clip_l`, `clip_g`, `t5xxl`);
    a role whose text is None is skipped."""
    import torch

    encoders = [e for e in clip.encoders if e is not None]
    device = torch.device("cpu") if clip.device == "cpu" else manager().use(*encoders)
    try:
        with torch.no_grad(), applied(tuple(encoders), clip.patches):
            outputs = {role: _encode_role(clip, role, texts.get(role), device) for role in clip.roles}
    finally:
        manager().release(*encoders)  # T5-XXL alone is 9 GB in fp16: keep the GPU for the transformer
    if clip.family == "flux":
        return _flux(clip, outputs)
    return _sd3(clip, outputs)


def _encode_role(clip: ClipHandle, role: str, text: str | None, device: Any) -> tuple[Any, Any] | None:
    if text is None:
        return None
    index = clip.roles.index(role)
    if role == "t5xxl":
        return _encode_t5(clip.encoders[index], text, T5_MIN_LENGTH[clip.family], device), None
    chunks = weighted_chunks(text, clip_encode)
    return _encode_chunks(clip, index, chunks, device)


def _encode_t5(model: Any, text: str, min_length: int, device: Any) -> Any:
    import torch

    tokens = [token for chunk in weighted_chunks(text, t5.encode) for token in chunk]
    ids = t5.pad([i for i, _ in tokens], min_length)
    weights = [w for _, w in tokens] + [1.0] * (len(ids) - len(tokens))
    batch = [ids]
    weighted = any(w != 1.0 for w in weights)
    if weighted:
        batch.append(t5.pad([], len(ids)))
    hidden = model(input_ids=torch.tensor(batch, device=device)).last_hidden_state
    if weighted:
        scale = torch.tensor(weights, device=device, dtype=hidden.dtype).unsqueeze(-1)
        hidden = (hidden[:1] - hidden[1:]) * scale + hidden[1:]
    return hidden[:1]


def _width(clip: ClipHandle, role: str, default: int) -> int:
    return clip.widths[clip.roles.index(role)] if role in clip.roles else default


def _sd3(clip: ClipHandle, outputs: dict[str, tuple[Any, Any] | None]) -> tuple[Any, Any]:
    import torch

    l_out, g_out, t5_out = (outputs.get(r) for r in ("clip_l", "clip_g", "t5xxl"))
    l_width, g_width = _width(clip, "clip_l", CLIP_L_WIDTH), _width(clip, "clip_g", CLIP_G_WIDTH)
    t5_width = _width(
        clip, "t5xxl", T5_WIDTH if l_width + g_width == CLIP_L_WIDTH + CLIP_G_WIDTH else l_width + g_width
    )
    cond = None
    pooled = None
    if l_out is not None or g_out is not None:
        lg = None
        if l_out is not None:
            lg = l_out[0]
        if g_out is not None:
            if lg is not None:
                cut = min(lg.shape[1], g_out[0].shape[1])
                lg = torch.cat([lg[:, :cut], g_out[0][:, :cut]], dim=-1)
            else:
                lg = torch.nn.functional.pad(g_out[0], (l_width, 0))
        assert lg is not None
        lg = torch.nn.functional.pad(lg, (0, t5_width - lg.shape[-1]))
        cond = lg
        l_pooled = l_out[1] if l_out is not None else torch.zeros((1, l_width), device=lg.device)
        g_pooled = g_out[1] if g_out is not None else torch.zeros((1, g_width), device=lg.device)
        pooled = torch.cat([l_pooled.to(lg), g_pooled.to(lg)], dim=-1)
    if t5_out is not None:
        cond = t5_out[0] if cond is None else torch.cat([cond, t5_out[0].to(cond)], dim=-2)
    if cond is None:
        cond = torch.zeros((1, 77, t5_width))
    if pooled is None:
        pooled = torch.zeros((1, l_width + g_width))
    return cond.float().cpu(), pooled.float().cpu()


def _flux(clip: ClipHandle, outputs: dict[str, tuple[Any, Any] | None]) -> tuple[Any, Any]:
    import torch

    l_out, t5_out = outputs.get("clip_l"), outputs.get("t5xxl")
    t5_width = _width(clip, "t5xxl", T5_WIDTH)
    cond = t5_out[0] if t5_out is not None else torch.zeros((1, T5_MIN_LENGTH["flux"], t5_width))
    pooled = l_out[1] if l_out is not None else torch.zeros((1, _width(clip, "clip_l", CLIP_L_WIDTH)))
    return cond.float().cpu(), pooled.float().cpu()
