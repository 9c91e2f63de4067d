"""ComfyUI's comfy.sd1_clip: prompt parsing, CLIP tokenizers and embedding loading, as Loom does them.

`SDTokenizer` is Loom's own (engine.diffusion.tokens), which tokenizes exactly as ComfyUI 0.3.64:
weights, escapes, `embedding:name`, 77-token windows. `SD1ClipModel` and `SDClipModel` are the classes
of `clip.cond_stage_model` and its `clip_l` (engine.diffusion.clip_models): `isinstance` checks,
`set_clip_options`, `encode_token_weights` work; building one from a config, as ComfyUI can, does not.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from engine.diffusion.clip_models import SD1ClipModel, SDClipModel
from engine.diffusion.embeddings import EmbeddingError, find_embedding, load_embedding
from engine.diffusion.prompt_weights import (
    escape_important,
    parse_parentheses,
    token_weights,
    unescape_important,
)
from engine.diffusion.tokens import SDTokenizer

__all__ = [
    "SD1ClipModel",
    "SD1Tokenizer",
    "SDClipModel",
    "SDTokenizer",
    "escape_important",
    "expand_directory_list",
    "gen_empty_tokens",
    "load_embed",
    "parse_parentheses",
    "token_weights",
    "unescape_important",
]


def gen_empty_tokens(special_tokens: dict[str, int | None], length: int) -> list[int]:
    """Start and end tokens (where the encoder has them) padded to `length`."""
    tokens = [t for t in (special_tokens.get("start"), special_tokens.get("end")) if t is not None]
    return tokens + [special_tokens["pad"]] * (length - len(tokens))  # type: ignore[list-item]


def expand_directory_list(directories: Sequence[str]) -> list[str]:
    """The folders and every folder below them."""
    found = set(directories)
    for directory in directories:
        found.update(root for root, _, _ in os.walk(directory, followlinks=True))
    return list(found)


def load_embed(
    embedding_name: str,
    embedding_directory: str | Sequence[str],
    embedding_size: int,
    embed_key: str | None = None,
) -> Any:
    """The vectors of embedding `embedding_name` (None if there is no such file or it is unusable)."""
    directories = [embedding_directory] if isinstance(embedding_directory, str) else list(embedding_directory)
    path = find_embedding(embedding_name, directories)
    if path is None:
        return None
    try:
        return load_embedding(path, embedding_size, embed_key or "")
    except (EmbeddingError, OSError, RuntimeError):
        return None


class SD1Tokenizer:
    """One tokenizer keyed `l` (or `clip_name`): {"l": windows}."""

    def __init__(
        self,
        embedding_directory: Any = None,
        tokenizer_data: dict | None = None,
        clip_name: str = "l",
        tokenizer: type = SDTokenizer,
        name: str | None = None,
    ) -> None:
        self.clip_name = name if name is not None else clip_name
        self.clip = name if name is not None else f"clip_{clip_name}"
        setattr(self, self.clip, tokenizer(embedding_directory=embedding_directory))

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            self.clip_name: getattr(self, self.clip).tokenize_with_weights(text, return_word_ids, **kwargs)
        }

    def untokenize(self, token_weight_pair: list[tuple[Any, ...]]) -> list[Any]:
        return getattr(self, self.clip).untokenize(token_weight_pair)

    def state_dict(self) -> dict[str, Any]:
        return {}
