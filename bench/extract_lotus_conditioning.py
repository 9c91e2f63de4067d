"""Write Lotus' null-prompt conditioning (2 × 1024 numbers) from ComfyUI's source into Loom's data file.

Provenance: Lotus-D conditions its UNet on the output of Stable Diffusion 2's frozen OpenCLIP ViT-H text
encoder for an empty prompt; it never changes, so ComfyUI's `LotusConditioning` node (ComfyUI 0.3.64,
`comfy_extras/nodes_lotus.py`) holds that model output as a literal [1, 2, 1024] list of numbers. This
script reads that literal as data (Python's `ast`, nothing is executed) and saves it, exactly, as float32
(what `torch.tensor` makes of the literal) to `engine/models/lotus_data/null_prompt.safetensors`.

    python bench/extract_lotus_conditioning.py [/tmp/comfy/ComfyUI/comfy_extras/nodes_lotus.py]

Prints the shape and a checksum of what it wrote; `--check` only compares the source with the file.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE = Path("/tmp/comfy/ComfyUI/comfy_extras/nodes_lotus.py")
SHAPE = (1, 2, 1024)


def read_numbers(source: Path) -> list[list[list[float]]]:
    """The one nested numeric list literal of `shape` SHAPE in `source` (an error if not exactly one)."""
    tree = ast.parse(source.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.List):
            try:
                value = ast.literal_eval(node)
            except ValueError:
                continue
            if _shape(value) == SHAPE:
                found.append(value)
    if len(found) != 1:
        raise SystemExit(f"{source}: expected one {list(SHAPE)} number list, found {len(found)}")
    return found[0]


def _shape(value: object) -> tuple[int, ...]:
    shape = []
    while isinstance(value, list) and value:
        shape.append(len(value))
        value = value[0]
    return tuple(shape) if isinstance(value, (int, float)) else ()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=SOURCE)
    parser.add_argument("--check", action="store_true", help="compare only; write nothing")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    import torch
    from safetensors.torch import load_file, save_file

    from engine.models.lotus import NULL_PROMPT_FILE, NULL_PROMPT_KEY

    tensor = torch.tensor(read_numbers(args.source), dtype=torch.float32)
    digest = hashlib.sha256(tensor.numpy().tobytes()).hexdigest()[:16]
    if args.check:
        same = torch.equal(load_file(str(NULL_PROMPT_FILE))[NULL_PROMPT_KEY], tensor)
        verdict = "identical to" if same else "DIFFERS from"
        print(f"{NULL_PROMPT_FILE.relative_to(ROOT)}: {verdict} {args.source}")
        raise SystemExit(0 if same else 1)
    NULL_PROMPT_FILE.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"source": "ComfyUI 0.3.64 comfy_extras/nodes_lotus.py (LotusConditioning)"}
    save_file({NULL_PROMPT_KEY: tensor}, str(NULL_PROMPT_FILE), metadata=metadata)
    print(f"wrote {NULL_PROMPT_FILE.relative_to(ROOT)}: shape {list(tensor.shape)}, sha256[:16] {digest}")


if __name__ == "__main__":
    main()
