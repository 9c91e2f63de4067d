"""Flux 3's tokenizer in ComfyUI's token format: the prompt in Qwen3-VL's user turn (no system turn),
tokenized whole with Qwen's vocabulary, no weights, then padded with `<|endoftext|>` to a multiple of 80
tokens, as diffusers' Flux 3 text-encoder step pads it (the encoder masks the padding out of its
attention; the diffusion model reads the padded positions too).
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.tokens_llm import QwenTokenizer

FLUX3_TEMPLATE = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
PAD_MULTIPLE = 80


class Flux3Tokenizer(QwenTokenizer):
    """Qwen's tokenizer with Flux 3's template, padded to a multiple of 80 (key qwen3vl_4b)."""

    def __init__(self, embedding_directory: Any = None, embedding_size: int = 2560) -> None:
        super().__init__("qwen3_4b", embedding_directory, embedding_size)
        self.embedding_key = "qwen3vl_4b"
        self.template = FLUX3_TEMPLATE

    def tokenize_with_weights(
        self,
        text: str,
        return_word_ids: bool = False,
        tokenizer_options: dict | None = None,
        llama_template: str | None = None,
        images: list[Any] | None = None,
        **kwargs: Any,
    ) -> list[list[tuple[Any, ...]]]:
        # Flux 3 conditions on reference latents, not on the vision tower: images are not tokenized.
        windows = super().tokenize_with_weights(
            text, return_word_ids, tokenizer_options, llama_template, **kwargs
        )
        padded = []
        for window in windows:
            missing = -len(window) % PAD_MULTIPLE
            pad = (self.pad_token, 1.0, 0) if return_word_ids else (self.pad_token, 1.0)
            padded.append([*window, *([pad] * missing)])
        return padded
