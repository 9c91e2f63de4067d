"""Loom's Llama 3 tokenizer (transformers' PreTrainedTokenizerFast on a `tokenizer.json`) against Meta's own
BPE ranks, token for token.

The reference is independent of the tokenizer.json: Meta's `tokenizer.model` (base64 bytes and rank per line,
the file Meta's tiktoken-based tokenizer reads; in the `llama-models` wheel as
`llama_models/llama3/tokenizer.model`) and the split pattern of Meta's `llama3/tokenizer.py`, run through a
plain byte-pair merge written here (lowest rank first, as tiktoken's). Neither file is copied into the
repository.

    OMP_NUM_THREADS=1 .venv/bin/python bench/llama3_tokenizer_check.py --tokenizer-json FILE --ranks FILE

Prints one row per prompt (tokens, equal or the first difference) and a one-line summary.
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Meta's Llama 3 split pattern (llama_models/llama3/tokenizer.py, `pat_str`).
PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)
PROMPTS = [
    "a red fox in the snow",
    "A photograph of an albino woman with white skin and dark hair wearing black in the style of old baroque "
    "oil paintings, with soft focus, wearing a pearl necklace around her neck, with a dark background",
    "A lo-fi, grungy wide shot of a ragged large red tree leaning slightly to one side Polaroid aesthetic.",
    "Let the girl put on the VR glasses full of a sense of technology, just like the scenes in Ready Player",
    "Change the image to let the girl’s hair fall loose around her shoulders, natural and flowing. Don’t",
    "(masterpiece:1.2), best quality, 8k, HDR — 50mm f/1.8; ISO 100 @ 1/250s",
    "日本語のテキスト、中文文本 and 한국어 with emoji 🦊🎨👩‍👩‍👧 and numbers 1234567890 3.14159",
    "tabs\tand\nnew lines\r\n  double  spaces   and trailing   ",
    "I'm sure they'll say it's what we'd've DONE'S",
    "code: def f(x): return x**2 + 1  # comment\n\tif x >= 10: print(f'{x}')",
    "",
]


def reference_encode(text: str, ranks: dict[bytes, int]) -> list[int]:
    import regex

    ids: list[int] = []
    for piece in regex.findall(PATTERN, text):
        data = piece.encode("utf-8")
        if data in ranks:
            ids.append(ranks[data])
            continue
        parts = [bytes([b]) for b in data]
        while len(parts) > 1:
            pairs = [(ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)]
            best = min(((rank, i) for rank, i in pairs if rank is not None), default=None)
            if best is None:
                break
            i = best[1]
            parts = [*parts[:i], parts[i] + parts[i + 1], *parts[i + 2 :]]
        ids.extend(ranks[part] for part in parts)
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer-json", type=Path, required=True, help="Llama 3's tokenizer.json")
    parser.add_argument("--ranks", type=Path, required=True, help="Meta's llama3 tokenizer.model")
    options = parser.parse_args()
    ranks = {}
    for line in options.ranks.read_text().splitlines():
        token, rank = line.split()
        ranks[base64.b64decode(token)] = int(rank)

    from engine import folders
    from engine.folders import Folders
    from engine.models.tokenizer import llama3

    with tempfile.TemporaryDirectory() as tmp:
        models = Path(tmp) / "models"
        target = models / "text_encoders" / llama3.FOLDER / llama3.FILE
        target.parent.mkdir(parents=True)
        target.write_bytes(options.tokenizer_json.read_bytes())
        folders.configure(Folders.under(Path(tmp), models_base=models))
        rows = []
        for prompt in PROMPTS:
            ours, theirs = llama3.encode(prompt), reference_encode(prompt, ranks)
            first = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
            if first is None and len(ours) != len(theirs):
                first = min(len(ours), len(theirs))
            rows.append((prompt, len(theirs), "equal" if first is None else f"differs at {first}"))
    for prompt, count, result in rows:
        print(f"{prompt[:60]!r:64} {count:4} tokens  {result}")
    equal = sum(r[2] == "equal" for r in rows)
    print(f"Llama 3 tokenizer: {equal} of {len(rows)} prompts token for token equal to Meta's BPE ranks")


if __name__ == "__main__":
    main()
