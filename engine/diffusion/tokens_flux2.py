"""Flux.2's tokenizers in ComfyUI's token format.

Klein (Qwen3 4B / 8B): the prompt in Qwen3's chat turn with an empty thinking block, tokenized whole with
Qwen's vocabulary (the one Loom ships for Z-Image, as ComfyUI uses its Qwen2.5 vocabulary there: `<think>`
is ordinary text in it), no weights, then padded with `<|endoftext|>` to at least 512 tokens
(ComfyUI's KleinTokenizer; the encoder masks the padding out of its attention).

Flux.2 dev (Mistral Small 3): the prompt in Mistral's instruction format with Black Forest Labs' system
prompt, after the start token `<s>` (1), unpadded, no weights (ComfyUI's Flux2Tokenizer). The vocabulary is
Mistral's "tekken" BPE, which ComfyUI's text-encoder files carry in a `tekken_model` tensor (the bytes of
its tekken.json): it is read from there and built with transformers' tekken converter, so no vocabulary
ships with Loom. Control tokens (`[INST]`, `[SYSTEM_PROMPT]`, …) written in the text are those tokens.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from engine.diffusion.tokens import SDTokenizer
from engine.diffusion.tokens_llm import LLMTokenizer, QwenTokenizer

KLEIN_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
KLEIN_MIN_LENGTH = 512


class KleinTokenizer(QwenTokenizer):
    """Qwen3's tokenizer with Klein's template and 512-token minimum (key qwen3_4b or qwen3_8b)."""

    def __init__(self, key: str, embedding_directory: Any = None, embedding_size: int = 2560) -> None:
        super().__init__("qwen3_4b", embedding_directory, embedding_size)
        self.embedding_key = key
        self.template = KLEIN_TEMPLATE
        self.min_length = KLEIN_MIN_LENGTH


MISTRAL_TEMPLATE = (
    "[SYSTEM_PROMPT]You are an AI that reasons about image descriptions. You give structured responses "
    "focusing on object relationships, object\nattribution and actions without speculation.[/SYSTEM_PROMPT]"
    "[INST]{}[/INST]"
)
MISTRAL_BOS, MISTRAL_PAD = 1, 11


class MistralTokenizer(LLMTokenizer):
    """Mistral Small 3's tekken tokenizer (from the text-encoder file) with Flux.2 dev's template."""

    def __init__(
        self, tekken: bytes | None, embedding_directory: Any = None, embedding_size: int = 5120
    ) -> None:
        super().__init__("mistral3_24b", embedding_directory, embedding_size, MISTRAL_PAD, MISTRAL_BOS)
        self.tekken = tekken

    @property
    def tokenizer(self) -> Any:
        if self.tekken is None:
            raise ValueError(
                "this Mistral text encoder file carries no tokenizer (no `tekken_model` tensor, which "
                "ComfyUI's mistral_3_small_flux2 files hold): use ComfyUI's Flux.2 text-encoder file"
            )
        return tekken_tokenizer(self.tekken)

    def _ids(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def tokenize_with_weights(
        self,
        text: str,
        return_word_ids: bool = False,
        tokenizer_options: dict | None = None,
        llama_template: str | None = None,
        **kwargs: Any,
    ) -> list[list[tuple[Any, ...]]]:
        kwargs["disable_weights"] = True
        text = (llama_template or MISTRAL_TEMPLATE).format(text)
        return super().tokenize_with_weights(text, return_word_ids, tokenizer_options, **kwargs)


@lru_cache(maxsize=2)
def tekken_tokenizer(tekken: bytes) -> Any:
    """A `tokenizers.Tokenizer` from the bytes of a tekken.json (built once per vocabulary)."""
    import tempfile
    from pathlib import Path

    from transformers.integrations.mistral.tokenizer import MistralConverter

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "tekken.json"
        path.write_bytes(tekken)
        return MistralConverter(vocab_file=str(path)).converted()


def flux2_tokenizer(
    key: str, embedding_directory: Any, width: int, tokenizer_data: dict[str, Any] | None = None
) -> SDTokenizer:
    """The tokenizer of one of Flux.2's text encoders."""
    if key in ("qwen3_4b", "qwen3_8b"):
        return KleinTokenizer(key, embedding_directory, width)
    return MistralTokenizer((tokenizer_data or {}).get("tekken_model"), embedding_directory, width)
