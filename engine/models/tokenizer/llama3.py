"""Llama 3's byte-level BPE tokenizer (HiDream's Llama 3.1 8B Instruct text encoder).

Loom does not ship this vocabulary: it is Meta's, under the Llama 3.1 Community License, whose terms for
redistribution (a copy of the agreement, a "Built with Llama" notice) are for the project to accept, not
for one module. Loom reads the `tokenizer.json` that people have beside their models:
`models/text_encoders/llama_tokenizer/tokenizer.json` (ComfyUI ships the same file as
`comfy/text_encoders/llama_tokenizer/tokenizer.json`; Hugging Face's meta-llama/Llama-3.1-8B-Instruct has it
too). transformers' `PreTrainedTokenizerFast` reads it; no special token is added by it (the caller puts
`<|begin_of_text|>` first, as ComfyUI's HiDream tokenizer does).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

FOLDER = "llama_tokenizer"
FILE = "tokenizer.json"
BEGIN_ID = 128000  # <|begin_of_text|>
PAD_ID = 128009  # <|eot_id|>: HiDream's padding


class MissingTokenizerError(FileNotFoundError):
    """The Llama 3 tokenizer file is not where Loom looks for it."""


def find() -> Path:
    """The tokenizer.json in a text_encoders folder's `llama_tokenizer/`."""
    from engine import folders

    try:
        return folders.current().model_path("text_encoders", f"{FOLDER}/{FILE}")
    except FileNotFoundError as exc:
        raise MissingTokenizerError(
            "HiDream's Llama 3.1 text encoder needs Llama 3's tokenizer, which Loom does not ship (Meta's "
            f"licence): put its {FILE} (from ComfyUI's comfy/text_encoders/{FOLDER}/ or Hugging Face's "
            f"meta-llama/Llama-3.1-8B-Instruct) at models/text_encoders/{FOLDER}/{FILE}"
        ) from exc


@lru_cache(maxsize=4)
def _tokenizer(path: str, stamp: float) -> Any:
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_file=path)


def tokenizer() -> Any:
    path = find()
    return _tokenizer(str(path), path.stat().st_mtime)


def encode(text: str) -> list[int]:
    """Token ids of `text`, without special tokens added (special tokens written in it are recognised)."""
    return list(tokenizer()(text, add_special_tokens=False)["input_ids"])
