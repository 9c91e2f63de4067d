"""Model-free smoke workflows of real node packs (bench/pack_smoke.json) on ComfyUI and on Loom:
each workflow's saved images compared pixel by pixel.

    flock /tmp/comfy.lock /work/main/.venv/bin/python bench/pack_smoke.py [--packs a,b] [--keep]

The packs are extracted from their fetched git mirrors into a temporary custom-nodes folder (see
packs_compat.py), both servers get them, the packs' requirements (--deps) and the same input image
(bench/pack_servers.py starts ComfyUI, then Loom). packs_compat.py --smoke prints the same results
beside its registration table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from comfy_client import psnr, queue_prompt, saved_images  # bench/, beside this script
from pack_servers import server, temp_work, write_paths_config
from packs_compat import extract_pack

WORKFLOWS = Path(__file__).with_name("pack_smoke.json")
Images = dict[str, list[np.ndarray]] | str


def smoke_image() -> Any:
    """A 64x48 test picture: a colour gradient with a red disc and a blue bar."""
    from PIL import Image

    y, x = np.mgrid[0:48, 0:64]
    rgb = np.stack([x * 4, y * 5, (x + y) * 2], axis=-1).astype(np.float64)
    rgb[(x - 20) ** 2 + (y - 20) ** 2 < 100] = (230, 40, 40)
    rgb[30:38, 36:60] = (30, 60, 220)
    return Image.fromarray(rgb.clip(0, 255).astype(np.uint8))


def workflows(packs: list[str]) -> dict[str, dict[str, dict[str, Any]]]:
    data = json.loads(WORKFLOWS.read_text())
    return {pack: data[pack] for pack in packs if pack in data}


def run_side(
    side: str, port: int, config: Path, work: Path, deps: str, chosen: dict[str, Any]
) -> dict[str, Images]:
    results: dict[str, Images] = {}
    with server(side, port, config, work, deps, inputs=work / "input"):
        for flows in chosen.values():
            for name, prompt in flows.items():
                try:
                    results[name] = saved_images(port, queue_prompt(port, prompt), timeout=300)
                except RuntimeError as exc:  # refused by validation: the answer names the node
                    results[name] = str(exc).replace("\\n", " ")[:160]
    return results


def compare(comfy: Images, loom: Images) -> str:
    """'same pixels', 'PSNR x dB' (worst image), or what failed on which side."""
    if isinstance(comfy, str):
        return f"ComfyUI failed: {comfy[:80]}"
    if isinstance(loom, str):
        return f"Loom failed: {loom[:100]}"
    if sorted(comfy) != sorted(loom) or any(len(comfy[k]) != len(loom[k]) for k in comfy):
        return "different outputs"
    worst = np.inf
    for key, pictures in comfy.items():
        for a, b in zip(pictures, loom[key], strict=True):
            worst = min(worst, psnr(a, b) if a.shape == b.shape else -np.inf)
    if worst == -np.inf:
        return "different sizes"
    return "same pixels" if worst == np.inf else f"PSNR {worst:.1f} dB"


def run_smoke(
    packs: list[str], work: Path, deps: str, ports: tuple[int, int]
) -> dict[str, list[tuple[str, str]]]:
    """pack -> [(workflow, result)] for the packs with smoke workflows; packs are extracted here."""
    chosen = workflows(packs)
    custom = work / "custom_nodes"
    for pack in chosen:
        if not (custom / pack).exists():
            extract_pack(pack, custom / pack)
    (work / "input").mkdir(parents=True, exist_ok=True)
    smoke_image().save(work / "input" / "smoke.png")
    config = write_paths_config(work, Path("/nonexistent-checkpoints"), custom)
    comfy = run_side("comfy", ports[0], config, work, deps, chosen)
    loom = run_side("loom", ports[1], config, work, deps, chosen)
    return {
        pack: [(name, compare(comfy[name], loom[name])) for name in flows] for pack, flows in chosen.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", help="comma-separated subset of the packs in pack_smoke.json")
    parser.add_argument("--deps", default="/tmp/packdeps", help="the packs' requirements (pip --target)")
    parser.add_argument("--ports", default="19053,19054", help="ComfyUI's and Loom's ports")
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    packs = (
        args.packs.split(",") if args.packs else [k for k in json.loads(WORKFLOWS.read_text()) if k[0] != "_"]
    )
    comfy_port, loom_port = (int(p) for p in args.ports.split(","))
    with temp_work("loom-pack-smoke-", args.keep) as scratch:
        results = run_smoke(packs, Path(scratch), args.deps, (comfy_port, loom_port))
    same = sum(r == "same pixels" for rows in results.values() for _, r in rows)
    total = sum(len(rows) for rows in results.values())
    for pack, rows in results.items():
        for name, result in rows:
            print(f"{pack:26} {name:28} {result}")
    print(f"summary: {same}/{total} smoke workflows give the same pixels on ComfyUI and Loom")
    return 0 if same == total else 1


if __name__ == "__main__":
    sys.exit(main())
