"""T5 v1.1's SentencePiece tokenizer (SD3's and Flux's T5-XXL), offline from the data beside this file.

`t5_data/` holds Google's vocabulary (Apache-2.0, see t5_data/LICENSE) in the tokenizers JSON format;
transformers' `T5TokenizerFast` reads it. As ComfyUI does, a prompt has no start token, ends with `</s>`
(1), is padded with `<pad>` (0) to at least 77 tokens and is never cut to a maximum length.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "t5_data"
PAD_ID = 0
END_ID = 1
MIN_LENGTH = 77


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    from transformers import T5TokenizerFast  # type: ignore[attr-defined]

    # As ComfyUI builds it: from the folder, so tokenizer_config.json's settings apply.
    return T5TokenizerFast.from_pretrained(str(DATA), local_files_only=True)


def encode(text: str) -> list[int]:
    """Token ids of `text` without special tokens."""
    return list(tokenizer()(text, add_special_tokens=False)["input_ids"])


def pad(ids: list[int], min_length: int = MIN_LENGTH) -> list[int]:
    """`ids` + `</s>`, padded with `<pad>` up to `min_length`."""
    out = [*ids, END_ID]
    return out + [PAD_ID] * max(0, min_length - len(out))
