"""Flux.2's tokenizers in ComfyUI's token format.

Klein (Qwen3 4B / 8B): the prompt in Qwen3's chat turn with an empty thinking block, tokenized whole with
Qwen's vocabulary (the one Loom ships for Z-Image, as ComfyUI uses its Qwen2.5 vocabulary there: `<think>`
is ordinary text in it), no weights, then padded with `<|endoftext|>` to at least 512 tokens
(ComfyUI's KleinTokenizer; the encoder masks the padding out of its attention).
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.tokens import SDTokenizer
from engine.diffusion.tokens_llm import QwenTokenizer

KLEIN_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
KLEIN_MIN_LENGTH = 512


class KleinTokenizer(QwenTokenizer):
    """Qwen3's tokenizer with Klein's template and 512-token minimum (key qwen3_4b or qwen3_8b)."""

    def __init__(self, key: str, embedding_directory: Any = None, embedding_size: int = 2560) -> None:
        super().__init__("qwen3_4b", embedding_directory, embedding_size)
        self.embedding_key = key
        self.template = KLEIN_TEMPLATE
        self.min_length = KLEIN_MIN_LENGTH


def flux2_tokenizer(key: str, embedding_directory: Any, width: int) -> SDTokenizer:
    """The tokenizer of one of Flux.2's text encoders."""
    if key in ("qwen3_4b", "qwen3_8b"):
        return KleinTokenizer(key, embedding_directory, width)
    raise ValueError(
        f"Flux.2 with a {key} text encoder is not supported by Loom yet: Loom runs Flux.2 Klein "
        "(Qwen3 4B / 8B text encoders); Flux.2 dev's Mistral Small 3 tokenizer is not implemented"
    )
