"""Prompt emphasis and chunking as ComfyUI users write prompts.

`(word)` multiplies the weight by 1.1 per level of nesting, `(word:1.3)` sets it, `\\(` and `\\)` are
literal parentheses. Prompts longer than one CLIP window are split into chunks of 75 tokens (plus
start and end tokens); a short word that would straddle two chunks moves whole to the next one.
"""

from __future__ import annotations

from collections.abc import Callable

CHUNK_TOKENS = 75
# Words longer than this may be split across chunks instead of moving whole.
LONG_WORD_TOKENS = 8
_OPEN, _CLOSE = "\0open\0", "\0close\0"

Token = tuple[int, float]  # (token id, weight)


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """Split a prompt into (text, weight) segments."""
    text = text.replace("\\(", _OPEN).replace("\\)", _CLOSE)
    return [(part.replace(_OPEN, "(").replace(_CLOSE, ")"), w) for part, w in _segments(text, weight)]


def _segments(text: str, weight: float) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    for part in _top_level_groups(text):
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            inner, inner_weight = part[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1 :])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out.extend(_segments(inner, inner_weight))
        elif part:
            out.append((part, weight))
    return out


def _top_level_groups(text: str) -> list[str]:
    """Split into plain runs and balanced top-level `( ... )` groups; unbalanced parens stay text."""
    groups: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(text):
        if char == "(":
            if depth == 0:
                groups.append(text[start:index])
                start = index
            depth += 1
        elif char == ")" and depth > 0:
            depth -= 1
            if depth == 0:
                groups.append(text[start : index + 1])
                start = index + 1
    groups.append(text[start:])
    return [g for g in groups if g]


def weighted_chunks(text: str, encode: Callable[[str], list[int]]) -> list[list[Token]]:
    """Token ids with weights, grouped into chunks of at most 75 (no start/end/padding yet)."""
    chunks: list[list[Token]] = [[]]
    for segment, weight in parse_weights(text):
        for word in segment.replace("\n", " ").split(" "):
            ids = encode(word) if word else []
            while ids:
                room = CHUNK_TOKENS - len(chunks[-1])
                if len(ids) <= room:
                    chunks[-1].extend((i, weight) for i in ids)
                    break
                if len(ids) > LONG_WORD_TOKENS:
                    chunks[-1].extend((i, weight) for i in ids[:room])
                    ids = ids[room:]
                chunks.append([])
    return chunks
