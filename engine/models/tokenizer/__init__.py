"""CLIP's BPE tokenizer, built offline from the vocabulary committed beside this file.

The vocabulary is OpenAI CLIP's `bpe_simple_vocab_16e6.txt.gz` (see `extract_vocab.py` for its provenance
and LICENSE-open_clip.txt for its licence). From it we rebuild the 49,408-token vocabulary and 48,894
merges exactly as CLIP does, and hand them to transformers' `CLIPTokenizer` (its fast, `tokenizers`
backed implementation: NFC, whitespace collapsing, lower-casing and CLIP's pre-tokenizer regex).

Every Stable Diffusion text encoder uses this one vocabulary; they differ only in padding:
SD1.x and SDXL's CLIP-L pad with `<|endoftext|>` (49407), open_clip encoders (SD2.x, SDXL's CLIP-G)
pad with 0.
"""

from __future__ import annotations

import gzip
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

VOCAB_PATH = Path(__file__).resolve().parent / "bpe_simple_vocab_16e6.txt.gz"
BOS_ID = 49406
EOS_ID = 49407
PAD_SD1 = EOS_ID
PAD_OPEN_CLIP = 0
CONTEXT_LENGTH = 77
VOCAB_SIZE = 49408
_NUM_MERGES = VOCAB_SIZE - 2 * 256 - 2


def _byte_symbols() -> list[str]:
    """CLIP's reversible byte → printable-character table, in vocabulary order."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return [chr(code) for code in codes]


@lru_cache(maxsize=1)
def load_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return CLIP's vocabulary (token → id) and its merges, in rank order."""
    lines = gzip.decompress(VOCAB_PATH.read_bytes()).decode("utf-8").split("\n")
    merges = [(first, second) for first, second in (line.split() for line in lines[1 : _NUM_MERGES + 1])]
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), *(a + b for a, b in merges)]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    return {token: index for index, token in enumerate(tokens)}, merges


@lru_cache(maxsize=1)
def get_clip_tokenizer() -> CLIPTokenizer:
    """The shared CLIP tokenizer (SD1.x padding with `<|endoftext|>`, model_max_length 77)."""
    from transformers import CLIPTokenizer

    vocab, merges = load_bpe()
    # transformers 5 needs merges as (first, second) pairs (its hint says strings, which it rejects);
    # vocab_file/merges_file would silently build a 3-token vocabulary.
    bpe: dict[str, Any] = {"vocab": vocab, "merges": merges}
    return CLIPTokenizer(
        **bpe,
        model_max_length=CONTEXT_LENGTH,
        bos_token="<|startoftext|>",
        eos_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def encode(text: str) -> list[int]:
    """The BPE ids of `text`, with no start/end tokens and no length limit."""
    return list(get_clip_tokenizer().backend_tokenizer.encode(text, add_special_tokens=False).ids)


def tokenize(text: str, pad_id: int = PAD_SD1, length: int = CONTEXT_LENGTH) -> list[int]:
    """`length` ids: start token, the text's ids cut to fit, end token, then `pad_id` padding.

    Use `PAD_SD1` for CLIP-L (SD1.x, SDXL's first encoder) and `PAD_OPEN_CLIP` for open_clip encoders
    (SD2.x, SDXL's second encoder).
    """
    ids = [BOS_ID, *encode(text)[: length - 2], EOS_ID]
    return ids + [pad_id] * (length - len(ids))
