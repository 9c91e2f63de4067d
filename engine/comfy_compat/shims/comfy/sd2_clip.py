"""ComfyUI's comfy.sd2_clip: SD2.x's OpenCLIP-H tokenizer (pads with 0, 1024-wide embeddings, key `h`)
and `SD2ClipModel`, the class of an SD2.x CLIP's `cond_stage_model`."""

from __future__ import annotations

from typing import Any

from engine.diffusion.clip_models import SD2ClipModel
from engine.diffusion.tokens import SDTokenizer

__all__ = ["SD2ClipHTokenizer", "SD2ClipModel", "SD2Tokenizer"]


class SD2ClipHTokenizer(SDTokenizer):
    def __init__(self, tokenizer_path: str | None = None, embedding_directory: Any = None, **_: Any) -> None:
        super().__init__(
            tokenizer_path,
            pad_with_end=False,
            embedding_directory=embedding_directory,
            embedding_size=1024,
            embedding_key="clip_h",
        )


class SD2Tokenizer:
    """{"h": windows}."""

    def __init__(self, embedding_directory: Any = None, tokenizer_data: dict | None = None) -> None:
        self.clip_name = "h"
        self.clip = "clip_h"
        self.clip_h = SD2ClipHTokenizer(embedding_directory=embedding_directory)

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        return {"h": self.clip_h.tokenize_with_weights(text, return_word_ids, **kwargs)}

    def untokenize(self, token_weight_pair: list[tuple[Any, ...]]) -> list[Any]:
        return self.clip_h.untokenize(token_weight_pair)

    def state_dict(self) -> dict[str, Any]:
        return {}
