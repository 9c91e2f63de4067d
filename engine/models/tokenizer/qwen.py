"""Qwen's byte-level BPE tokenizer (Qwen2.5-VL for Qwen-Image, Qwen3 for Z-Image), offline from the data
beside this file.

`qwen_data/` holds the Qwen2.5 vocabulary (151,643 BPE tokens, 151,387 merges, then the chat specials
`<|endoftext|>` 151643, `<|im_start|>` 151644, `<|im_end|>` 151645, ...; Apache-2.0, see qwen_data/LICENSE)
as ComfyUI ships it. transformers' `Qwen2Tokenizer` reads it as ComfyUI does. No special token is added:
prompts are wrapped in the family's chat template by the caller, whose `<|im_start|>` markers are the
special tokens.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent / "qwen_data"
PAD_ID = 151643  # <|endoftext|>
IM_START_ID = 151644
IM_END_ID = 151645


@lru_cache(maxsize=1)
def tokenizer() -> Any:
    from transformers import Qwen2Tokenizer

    return Qwen2Tokenizer.from_pretrained(str(DATA), local_files_only=True)


def encode(text: str) -> list[int]:
    """Token ids of `text` (chat markers in it become their special ids)."""
    return list(tokenizer()(text, add_special_tokens=False)["input_ids"])
