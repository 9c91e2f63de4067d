"""ComfyUI's comfy.sdxl_clip: the SDXL tokenizers (CLIP-G pads with 0, 1280-wide embeddings) and the
classes of an SDXL CLIP's `cond_stage_model` (`SDXLClipModel`, `SDXLRefinerClipModel`, `SDXLClipG`)."""

from __future__ import annotations

from typing import Any

from engine.diffusion.clip_models import SDXLClipG, SDXLClipModel, SDXLRefinerClipModel
from engine.diffusion.tokens import SDTokenizer

__all__ = ["SDXLClipG", "SDXLClipGTokenizer", "SDXLClipModel", "SDXLRefinerClipModel", "SDXLTokenizer"]


class SDXLClipGTokenizer(SDTokenizer):
    def __init__(self, tokenizer_path: str | None = None, embedding_directory: Any = None, **_: Any) -> None:
        super().__init__(
            tokenizer_path,
            pad_with_end=False,
            embedding_directory=embedding_directory,
            embedding_size=1280,
            embedding_key="clip_g",
        )


class SDXLTokenizer:
    """{"g": CLIP-G windows, "l": CLIP-L windows}, in ComfyUI's order."""

    def __init__(self, embedding_directory: Any = None, tokenizer_data: dict | None = None) -> None:
        self.clip_l = SDTokenizer(embedding_directory=embedding_directory)
        self.clip_g = SDXLClipGTokenizer(embedding_directory=embedding_directory)

    def tokenize_with_weights(
        self, text: str, return_word_ids: bool = False, **kwargs: Any
    ) -> dict[str, Any]:
        return {
            "g": self.clip_g.tokenize_with_weights(text, return_word_ids, **kwargs),
            "l": self.clip_l.tokenize_with_weights(text, return_word_ids, **kwargs),
        }

    def untokenize(self, token_weight_pair: list[tuple[Any, ...]]) -> list[Any]:
        return self.clip_g.untokenize(token_weight_pair)

    def state_dict(self) -> dict[str, Any]:
        return {}
