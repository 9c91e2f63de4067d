"""`CLIP.cond_stage_model` of HiDream: CLIP-L, CLIP-G, T5-XXL and Llama 3.1 8B, composed as ComfyUI's
HiDreamTEModel does.

* pooled: CLIP-L's and CLIP-G's projected pooled vectors side by side (zeros for a missing one);
* cond: T5's 128-token sequence, its padding masked out of T5's attention (zeros [1, 128, width] without T5);
* `conditioning_llama3`: Llama's hidden states after each of its layers (the last one through the final
  norm), [1, layers, tokens, width], the padding masked out of the attention; without Llama, zeros
  [1, 32, 1, width].

Prompt weights on the Llama part act as ComfyUI's do on this 4-D output (its CLIP weighting loop, written for
[tokens, width], walks the layer axis): where token j of a window is weighted, the whole of hidden state j
(the embedding output counting as 0) is pushed from the empty prompt's by that weight. Kept for the same
images as ComfyUI; an unweighted prompt is not touched.
"""

from __future__ import annotations

from typing import Any

import torch

from engine.diffusion.clip_models_flow import _FlowClipModel
from engine.diffusion.devices import manager
from engine.models.hidream import LLAMA_LAYERS


class HiDreamClipModel(_FlowClipModel):
    """HiDream's four encoders (`clip_l`, `clip_g`, `t5xxl`, `llama` as ComfyUI names them; absent ones are
    None)."""

    def _compose(self, tokens: dict[str, Any]) -> tuple[Any, ...]:
        l_width, g_width = self.width("clip_l"), self.width("clip_g")
        pooled = None
        if tokens.get("l") or tokens.get("g"):
            l_out, g_out = self._run("clip_l", tokens), self._run("clip_g", tokens)
            l_pooled = l_out[1] if l_out is not None else torch.zeros((1, l_width))
            g_pooled = g_out[1] if g_out is not None else torch.zeros((1, g_width))
            pooled = torch.cat([l_pooled, g_pooled], dim=-1)
        t5_out = self._run("t5xxl", tokens)
        cond = t5_out[0] if t5_out is not None else torch.zeros((1, 128, self.width("t5xxl")))
        if pooled is None:
            pooled = torch.zeros((1, l_width + g_width))
        llama = self._llama(tokens.get("llama", []))
        return cond, pooled, {"conditioning_llama3": llama}

    def _llama(self, windows: list[list[tuple[Any, ...]]]) -> Any:
        part = self.part("llama3_8b")
        if part is None:
            return torch.zeros((1, LLAMA_LAYERS, 1, self.width("llama3_8b")))
        clip = self._clip[0]
        encoder = clip.encoders[part.index]
        device = torch.device("cpu") if clip.device == "cpu" else manager().use(encoder)
        with clip.weights_patched(part.index):
            return encode_llama(encoder, windows, part.special_tokens["pad"], device)


def encode_llama(encoder: Any, windows: list[list[tuple[Any, ...]]], pad_id: int, device: Any) -> Any:
    """[1, layers, tokens, width] float32 on the CPU: each layer's output for the windows side by side."""
    from engine.diffusion.text_encode import _embeddings_in, _ids_and_slots, padding_mask

    weighted = any(pair[1] != 1.0 for window in windows for pair in window)
    batch = [list(window) for window in windows]
    if weighted or not batch:
        length = max((len(w) for w in windows), default=1)
        batch.append([(128000, 1.0)] + [(pad_id, 1.0)] * max(length - 1, 0))
    ids, slots = _ids_and_slots(batch, encoder, pad_id)
    mask = padding_mask(ids, pad_id).to(device)
    with torch.no_grad(), _embeddings_in(encoder, slots):
        out = encoder(input_ids=torch.tensor(ids, device=device), attention_mask=mask)
    states = torch.stack(out.hidden_states, dim=1).float()  # [rows, 1 + layers, tokens, width]
    sections = len(windows)
    if weighted:
        empty = states[-1]
        for row, window in enumerate(windows):
            for j in range(min(states.shape[1], len(window))):
                weight = window[j][1]
                if weight != 1.0:
                    states[row, j] = (states[row, j] - empty[j]) * weight + empty[j]
    states = (states[:sections] if sections else states[-1:])[:, 1:]
    # Windows follow one another along the tokens (one window: ComfyUI never cuts Llama's prompt).
    return torch.cat(list(states), dim=1).unsqueeze(0).cpu()
