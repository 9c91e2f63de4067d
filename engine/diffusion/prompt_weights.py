"""Prompt emphasis as ComfyUI parses it.

`(word)` multiplies the weight by 1.1 per level of nesting, `(word:1.3)` sets it, `\\(` and `\\)` are
literal parentheses. The state machine follows ComfyUI's (`comfy.sd1_clip.parse_parentheses`), quirks
included, so that a prompt with unbalanced parentheses splits exactly as it does there: a `)` with no
open group is kept as text and makes the next `(` text too.
"""

from __future__ import annotations

# Escaped parentheses are hidden behind control characters while groups are parsed.
_ESCAPED_CLOSE, _ESCAPED_OPEN = "\0\1", "\0\2"


def escape_important(text: str) -> str:
    return text.replace("\\)", _ESCAPED_CLOSE).replace("\\(", _ESCAPED_OPEN)


def unescape_important(text: str) -> str:
    return text.replace(_ESCAPED_CLOSE, ")").replace(_ESCAPED_OPEN, "(")


def parse_parentheses(text: str) -> list[str]:
    """Split into plain runs and top-level `( ... )` groups (groups keep their parentheses)."""
    parts: list[str] = []
    current = ""
    depth = 0
    for char in text:
        if char == "(":
            if depth == 0:
                if current:
                    parts.append(current)
                current = "("
            else:
                current += char
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                parts.append(current + ")")
                current = ""
            else:
                current += char
        else:
            current += char
    if current:
        parts.append(current)
    return parts


def token_weights(text: str, weight: float) -> list[tuple[str, float]]:
    """(text, weight) segments of an escaped prompt; nested groups multiply or set the weight."""
    out: list[tuple[str, float]] = []
    for part in parse_parentheses(text):
        if len(part) >= 2 and part[0] == "(" and part[-1] == ")":
            inner, inner_weight = part[1:-1], weight * 1.1
            colon = inner.rfind(":")
            if colon > 0:
                try:
                    inner_weight = float(inner[colon + 1 :])
                    inner = inner[:colon]
                except ValueError:
                    pass
            out.extend(token_weights(inner, inner_weight))
        else:
            out.append((part, weight))
    return out


def parse_weights(text: str, weight: float = 1.0) -> list[tuple[str, float]]:
    """A raw prompt's (text, weight) segments with escaped parentheses restored."""
    return [(unescape_important(part), w) for part, w in token_weights(escape_important(text), weight)]
