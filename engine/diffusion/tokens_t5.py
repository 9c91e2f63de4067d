"""T5-XXL's tokenizer in ComfyUI's token format (SD3's and Flux's `t5xxl` windows).

One window per prompt, never cut: no start token, the prompt's SentencePiece ids with their weights,
`</s>`, then `<pad>` up to the family's minimum length (77 for SD3, 256 for Flux). Weights and embeddings
are parsed as for CLIP (`SDTokenizer`); only the vocabulary and the window shape differ.
"""

from __future__ import annotations

from typing import Any

from engine.diffusion.tokens import SDTokenizer
from engine.models.tokenizer import t5

# Chroma (as PixArt in ComfyUI) pads nothing: its T5 sees the prompt and `</s>` only.
T5_MIN_LENGTH = {"sd3": 77, "flux": 256, "chroma": 1}
# ComfyUI's T5 tokenizer has no maximum length worth the name.
T5_MAX_LENGTH = 99999999


class T5Tokenizer(SDTokenizer):
    """`SDTokenizer` over T5 v1.1's SentencePiece vocabulary (engine.models.tokenizer.t5)."""

    def __init__(self, family: str, embedding_directory: Any = None, embedding_size: int = 4096) -> None:
        super().__init__(
            max_length=T5_MAX_LENGTH,
            pad_with_end=False,
            embedding_directory=embedding_directory,
            embedding_size=embedding_size,
            embedding_key="t5xxl",
            pad_to_max_length=False,
            min_length=T5_MIN_LENGTH[family],
            pad_token=t5.PAD_ID,
        )
        self.start_token = None
        self.end_token = t5.END_ID
        self.tokens_start = 0

    @property
    def tokenizer(self) -> Any:
        return t5.tokenizer()

    def _ids(self, text: str) -> list[int]:
        return t5.encode(text)
