"""Text generation with a CLIP's language model (ComfyUI's TextGenerate): greedy, or sampled with
temperature, top-k, top-p, min-p and repetition / presence penalties from a seeded generator, so a seed
gives the same text on any device.

The prompt is run once; each further token reuses the language model's key/value cache. Generation stops
at `<|im_end|>` or `<|endoftext|>`, or after `max_length` new tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

STOP_IDS = (151643, 151645)  # <|endoftext|>, <|im_end|>


@dataclass(frozen=True)
class Sampling:
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    seed: int = 0


def _penalised(logits: torch.Tensor, seen: torch.Tensor, settings: Sampling) -> torch.Tensor:
    """CTRL's repetition penalty (divide positive, multiply negative logits of seen tokens) and a flat
    presence penalty subtracted from them."""
    if seen.numel() == 0:
        return logits
    picked = logits[seen]
    if settings.repetition_penalty != 1.0:
        picked = torch.where(
            picked > 0, picked / settings.repetition_penalty, picked * settings.repetition_penalty
        )
    logits = logits.clone()
    logits[seen] = picked - settings.presence_penalty
    return logits


def _pick(logits: torch.Tensor, settings: Sampling, generator: torch.Generator) -> int:
    if not settings.do_sample:
        return int(logits.argmax())
    logits = logits / max(settings.temperature, 1e-5)
    if settings.top_k > 0:
        cutoff = torch.topk(logits, min(settings.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < cutoff, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if settings.min_p > 0:
        probs = probs.masked_fill(probs < settings.min_p * probs.max(), 0.0)
    if settings.top_p < 1.0:
        ordered, order = probs.sort(descending=True)
        outside = ordered.cumsum(0) - ordered > settings.top_p  # keep the smallest set reaching top_p
        probs = probs.scatter(0, order, ordered.masked_fill(outside, 0.0))
    return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


def generate(encoder: Any, prompt_ids: list[int], max_length: int, settings: Sampling) -> list[int]:
    """New token ids after `prompt_ids` from an LLMEncoder that has a head (`encoder.head`)."""
    if encoder.head is None:
        raise ValueError("this text encoder file has no lm_head, so it cannot generate text")
    model = encoder.model
    parameter = next(model.parameters())
    head = encoder.head.weight().to(parameter.device, parameter.dtype)
    generator = torch.Generator().manual_seed(int(settings.seed) % 2**64)
    ids = torch.tensor([prompt_ids], device=parameter.device)
    seen = torch.tensor(sorted(set(prompt_ids)), dtype=torch.long)
    out: list[int] = []
    past = None
    with torch.no_grad():
        for _ in range(max_length):
            result = model(input_ids=ids, past_key_values=past, use_cache=True)
            past = result.past_key_values
            logits = (result.last_hidden_state[0, -1] @ head.T).float().cpu()
            token = _pick(_penalised(logits, seen, settings), settings, generator)
            if token in STOP_IDS:
                break
            out.append(token)
            seen = torch.unique(torch.cat([seen, torch.tensor([token])]))
            ids = torch.tensor([[token]], device=parameter.device)
    return out
