"""Re-extract CLIP's BPE vocabulary from the open-clip-torch wheel and check it.

Provenance: `bpe_simple_vocab_16e6.txt.gz` is OpenAI CLIP's byte-pair vocabulary, redistributed under
the MIT licence (see LICENSE-open_clip.txt beside it) inside the `open-clip-torch` wheel as
`open_clip/bpe_simple_vocab_16e6.txt.gz`. The committed copy was taken from open_clip_torch-3.3.0.

Usage (the wheel is only downloaded, never installed; it depends on torchvision):

    pip download --no-deps -d /tmp/oc open-clip-torch
    python engine/models/tokenizer/extract_vocab.py /tmp/oc/open_clip_torch-*.whl
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

VOCAB_NAME = "bpe_simple_vocab_16e6.txt.gz"
WHEEL_MEMBER = f"open_clip/{VOCAB_NAME}"
SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"


def extract(wheel: Path, dest_dir: Path) -> Path:
    """Copy the vocabulary out of `wheel` into `dest_dir`, refusing it if its sha256 differs."""
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(WHEEL_MEMBER)
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256:
        raise SystemExit(f"{wheel}: {WHEEL_MEMBER} has sha256 {digest}, expected {SHA256}")
    dest = dest_dir / VOCAB_NAME
    dest.write_bytes(data)
    return dest


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(extract(Path(argv[0]), Path(__file__).resolve().parent))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
