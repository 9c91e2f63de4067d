"""The offline CLIP tokenizer gives CLIP's exact ids (expected ids taken from open_clip's reference BPE)."""

import hashlib
import time

import pytest

from engine.models.tokenizer import (
    BOS_ID,
    EOS_ID,
    PAD_OPEN_CLIP,
    PAD_SD1,
    VOCAB_PATH,
    VOCAB_SIZE,
    encode,
    get_clip_tokenizer,
    load_bpe,
    tokenize,
)
from engine.models.tokenizer.extract_vocab import SHA256

CASES = {
    "a photo of a cat": [320, 1125, 539, 320, 2368],
    "A PHOTO of a Cat!!!": [320, 1125, 539, 320, 2368, 995],
    "(red:1.2) car": [263, 736, 281, 272, 269, 273, 264, 1615],
    "1234567 3.14": [272, 273, 274, 275, 276, 277, 278, 274, 269, 272, 275],
    "🐱🚀 emoji": [35710, 13542, 16327],
    "猫の写真": [163, 234, 104, 21575, 44653, 33440, 509],
    "  multiple   spaces\n\tand tabs  ": [6470, 9006, 537, 29163],
    "don't it's we'll I'M": [847, 713, 585, 568, 649, 1342, 328, 880],
    "embedding:foo_bar-baz": [19703, 796, 281, 23435, 318, 2411, 268, 25268],
    "(masterpiece:1.2), ((best": [263, 12066, 281, 272, 269, 273, 2361, 13796, 949],
}


def test_vocabulary_file_is_the_committed_one() -> None:
    assert hashlib.sha256(VOCAB_PATH.read_bytes()).hexdigest() == SHA256
    vocab, merges = load_bpe()
    assert len(vocab) == VOCAB_SIZE
    assert len(merges) == 48894
    assert vocab["<|startoftext|>"] == BOS_ID
    assert vocab["<|endoftext|>"] == EOS_ID


@pytest.mark.parametrize("text", list(CASES))
def test_known_ids(text: str) -> None:
    assert encode(text) == CASES[text]


def test_hf_call_matches_clip() -> None:
    tok = get_clip_tokenizer()
    assert len(tok) == VOCAB_SIZE
    assert tok.model_max_length == 77
    assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_sd1_and_open_clip_padding() -> None:
    sd1 = tokenize("a photo of a cat", PAD_SD1)
    oc = tokenize("a photo of a cat", PAD_OPEN_CLIP)
    assert len(sd1) == len(oc) == 77
    assert sd1[:7] == oc[:7] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert set(sd1[7:]) == {49407}
    assert set(oc[7:]) == {0}


def test_overlong_prompt_is_cut_and_still_ends() -> None:
    ids = tokenize("a " * 100)
    assert len(ids) == 77
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert ids[1:-1] == [320] * 75
    assert len(encode("a " * 100)) == 100


def test_loads_fast() -> None:
    import transformers  # noqa: F401  (import time is not the tokenizer's load time)

    get_clip_tokenizer.cache_clear()
    load_bpe.cache_clear()
    start = time.perf_counter()
    get_clip_tokenizer()
    elapsed = time.perf_counter() - start
    print(f"CLIP tokenizer load: {elapsed * 1000:.0f} ms")
    assert elapsed < 1.0
