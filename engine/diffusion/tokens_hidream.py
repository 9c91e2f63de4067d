"""HiDream's four tokenizers in ComfyUI's token format: {"g", "l", "t5xxl", "llama"}.

As ComfyUI's HiDreamTokenizer: CLIP-L and CLIP-G as SD3's (windows as long as the encoder's position table:
HiDream's "long" CLIPs have 248 positions, so 246 prompt tokens a window); T5-XXL in one window of 128
tokens (the prompt cut to 127, `</s>`, `<pad>` up to 128); Llama 3 with `<|begin_of_text|>` first, no end
token, padded with `<|eot_id|>` (128009) to at least 128 tokens and never cut. Weights are parsed for all
four.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.tokens import SDTokenizer
from engine.diffusion.tokens_llm import LLMTokenizer
from engine.diffusion.tokens_t5 import T5Tokenizer
from engine.models.tokenizer import llama3

T5_LENGTH = 128
LLAMA_MIN_LENGTH = 128
CLIP_LENGTH_KEY = "{}_max_length"  # ComfyUI's tokenizer_data key for a long CLIP's window


class HiDreamT5Tokenizer(T5Tokenizer):
    """T5-XXL for HiDream: only the first window of 128 tokens is kept (ComfyUI's `[t5xxl[0]]`)."""

    def __init__(self, embedding_directory: Any = None, embedding_size: int = 4096) -> None:
        super().__init__("sd3", embedding_directory, embedding_size)
        self.min_length = T5_LENGTH
        self.max_length = T5_LENGTH

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, tokenizer_options: dict | None = None, **kwargs: Any
    ) -> list[list[tuple[Any, ...]]]:
        return super().tokenize_with_weights(text, return_word_ids, tokenizer_options, **kwargs)[:1]


class Llama3Tokenizer(LLMTokenizer):
    """`SDTokenizer` over Llama 3's vocabulary (engine.models.tokenizer.llama3), as ComfyUI's LLAMA3Tokenizer
    with HiDream's settings."""

    def __init__(self, embedding_directory: Any = None, embedding_size: int = 4096) -> None:
        super().__init__(
            "llama", embedding_directory, embedding_size, llama3.PAD_ID, llama3.BEGIN_ID, LLAMA_MIN_LENGTH
        )

    @property
    def tokenizer(self) -> Any:
        return llama3.tokenizer()

    def _ids(self, text: str) -> list[int]:
        return llama3.encode(text)


def hidream_tokenizer(
    key: str, embedding_directory: Any, width: int, tokenizer_data: dict[str, Any] | None
) -> SDTokenizer:
    """The tokenizer of HiDream's encoder `key` (g, l, t5xxl, llama)."""
    if key == "t5xxl":
        return HiDreamT5Tokenizer(embedding_directory, width)
    if key == "llama":
        return Llama3Tokenizer(embedding_directory, width)
    embedding_key = f"clip_{key}"
    length = (tokenizer_data or {}).get(CLIP_LENGTH_KEY.format(embedding_key), 77)
    return SDTokenizer(
        max_length=int(length),
        pad_with_end=key == "l",
        embedding_directory=embedding_directory,
        embedding_size=width,
        embedding_key=embedding_key,
    )


def note_clip_lengths(encoders: list[Any]) -> None:
    """Record each CLIP's window length (its position table) where the tokenizer will look for it, as
    ComfyUI's `model_options_long_clip` does for 248-position CLIPs."""
    for encoder in encoders:
        if encoder.role not in ("clip_l", "clip_g"):
            continue
        positions = int(encoder.model.config.max_position_embeddings)
        if positions != 77:
            encoder.model.tokenizer_data = {CLIP_LENGTH_KEY.format(encoder.role): positions}
