"""Qwen's tokenizer (Z-Image's Qwen3, Qwen-Image's Qwen2.5-VL) built from the committed data gives the ids of
an independent byte-level BPE written here from the same vocab.json and merges.txt (GPT-2's algorithm with
Qwen2's pre-tokenizer pattern and NFC normalisation), special chat tokens included."""

from __future__ import annotations

import json
import unicodedata
from functools import lru_cache
from itertools import pairwise

import pytest
import regex

from engine.models.tokenizer import qwen

# Qwen2's pre-tokenizer split (tokenizer.json of Qwen/Qwen2.5-*): contractions, letters with an optional
# leading non-letter, single digits, punctuation runs, newlines, spaces.
PATTERN = regex.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPECIALS = {"<|endoftext|>": 151643, "<|im_start|>": 151644, "<|im_end|>": 151645}
CASES = [
    "a photo of a cat",
    "A PHOTO of a Cat!!!",
    "(red:1.2) car, ((masterpiece))",
    "1234567 3.14",
    "🐱🚀 emoji",
    "猫の写真と東京の夜景",
    "  multiple   spaces\n\tand tabs  \n\n",
    "don't it's we'll I'M",
    "Ünïcödé café naïve",
    "<|im_start|>user\na fox in snow<|im_end|>\n<|im_start|>assistant\n",
]


def _byte_table() -> dict[int, str]:
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def _data() -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    vocab = json.loads((qwen.DATA / "vocab.json").read_text(encoding="utf-8"))
    lines = (qwen.DATA / "merges.txt").read_text(encoding="utf-8").splitlines()
    merges = [tuple(line.split(" ")) for line in lines if line and not line.startswith("#version")]
    return vocab, {pair: rank for rank, pair in enumerate(merges)}  # type: ignore[misc]


def _bpe(word: str, ranks: dict[tuple[str, str], int]) -> list[str]:
    parts = list(word)
    while len(parts) > 1:
        pairs = [(ranks.get((a, b), 1 << 30), i) for i, (a, b) in enumerate(pairwise(parts))]
        rank, i = min(pairs)
        if rank == 1 << 30:
            break
        parts[i : i + 2] = [parts[i] + parts[i + 1]]
    return parts


def reference_ids(text: str) -> list[int]:
    vocab, ranks = _data()
    table = _byte_table()
    ids: list[int] = []
    chunks = regex.split("(" + "|".join(regex.escape(s) for s in SPECIALS) + ")", text)
    for chunk in chunks:
        if chunk in SPECIALS:
            ids.append(SPECIALS[chunk])
            continue
        for piece in PATTERN.findall(unicodedata.normalize("NFC", chunk)):
            word = "".join(table[b] for b in piece.encode("utf-8"))
            ids.extend(vocab[token] for token in _bpe(word, ranks))
    return ids


def test_vocabulary_sizes() -> None:
    vocab, ranks = _data()
    assert len(vocab) == 151643 and len(ranks) == 151387


@pytest.mark.parametrize("text", CASES)
def test_ids_match_the_reference_bpe(text: str) -> None:
    assert qwen.encode(text) == reference_ids(text)


def test_ids_match_a_tokenizers_library_build_of_the_same_files() -> None:
    """A second reference: the `tokenizers` (Rust) byte-level BPE assembled as Qwen's tokenizer.json
    declares it (NFC, Qwen2's split pattern, byte-level), from the same vocab.json and merges.txt."""
    from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers

    vocab, ranks = _data()
    merges = sorted(ranks, key=lambda pair: ranks[pair])
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=False))
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PATTERN.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIALS])
    for text in CASES:
        assert qwen.encode(text) == tokenizer.encode(text, add_special_tokens=False).ids, text
