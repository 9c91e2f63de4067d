"""Real ComfyUI node packs loaded in Loom and in ComfyUI, side by side: nodes each registers, and
why a pack (or a node) fails.

    flock /tmp/comfy.lock /work/main/.venv/bin/python bench/packs_compat.py [--packs a,b] [--smoke] [--keep]

Each pack is taken from a fetched git mirror (`/work/.mirror/<owner>+<name>/repo`, see the `fetch`
tool), extracted into a temporary folder (never into this repository: packs are GPL) and loaded in
a fresh process on each side: Loom (this checkout, `engine.custom_nodes.load_pack`) and ComfyUI
(`nodes.load_custom_node` of a ComfyUI checkout with its venv, after its built-in extra nodes).
Both sides see the same third-party packages: Loom's probe falls back to the ComfyUI venv's
site-packages for modules its own venv lacks (its own come first), and both then read the packs'
requirements from `--deps` (a `pip install --target` folder, default /tmp/packdeps; never part of
Loom's requirements.txt; docs/custom-nodes.md says how it was filled without touching torch); a
module none of these has shows up as an import error on both sides. `--smoke` also runs
bench/pack_smoke.json's model-free workflows on a ComfyUI and a Loom server (bench/pack_smoke.py)
and compares their saved images. Run it under the shared lock: `flock /tmp/comfy.lock ...`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

LOOM = Path(__file__).resolve().parents[1]
MIRRORS = Path("/work/.mirror")
PACKS = {
    "rgthree-comfy": "rgthree+rgthree-comfy",
    "ComfyUI-KJNodes": "kijai+ComfyUI-KJNodes",
    "ComfyUI_essentials": "cubiq+ComfyUI_essentials",
    "ComfyUI-Impact-Pack": "ltdrdata+ComfyUI-Impact-Pack",
    "ComfyUI-Custom-Scripts": "pythongosssss+ComfyUI-Custom-Scripts",
    "ComfyUI-Easy-Use": "yolain+ComfyUI-Easy-Use",
    "was-node-suite-comfyui": "WASasquatch+was-node-suite-comfyui",
    "ComfyUI_IPAdapter_plus": "cubiq+ComfyUI_IPAdapter_plus",
}
# Git submodules a pack's install.py clones beside it (the mirror holds only the pack): mirror, the
# folder inside the pack, taken at the newest commit no later than the pack's own HEAD.
SUBMODULES = {
    "ComfyUI-Impact-Pack": [("ltdrdata+ComfyUI-Impact-Subpack", "impact_subpack")],
}

LOOM_PROBE = textwrap.dedent(
    """
    import json, logging, sys
    logging.disable(logging.CRITICAL)
    sys.path.append(sys.argv[2])  # third-party modules Loom's venv lacks: the ComfyUI venv's
    sys.path.append(sys.argv[3])  # then the packs' own requirements (--deps), as on ComfyUI's side
    try:  # that venv's CUDA-built torchvision imports beside Loom's CPU torch only with this shim
        sys.path.append("/work/shared/tools/comfyui")
        import torchvision_cpu_shim
    except ImportError:
        pass
    from pathlib import Path
    from engine import folders
    from engine.custom_nodes import load_pack
    from nodes import builtin_registry
    # Folders as Loom's server prepares them before packs load (packs list input/ at import).
    root = folders.Folders.under(Path(sys.argv[1]).parent / "loom-root")
    for path in (root.output, root.input, root.temp):
        path.mkdir(parents=True, exist_ok=True)
    folders.configure(root)
    status = load_pack(builtin_registry(), Path(sys.argv[1]))
    print("RESULT" + json.dumps({"nodes": len(status.nodes), "error": status.error,
        "warnings": len(status.warnings), "node_errors": status.node_errors}))
    """
)

COMFY_PROBE = textwrap.dedent(
    """
    import asyncio, json, logging, sys, io
    sys.path.insert(0, sys.argv[2])
    sys.path.append(sys.argv[3])  # the packs' requirements (--deps), after the venv's own packages
    stream = io.StringIO()
    logging.basicConfig(stream=stream, level=logging.WARNING, force=True)
    import utils.extra_config  # main.py's first imports: ComfyUI's `utils` package before any other
    from comfy.cli_args import args
    args.cpu = True
    import execution, server, nodes
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    execution.PromptQueue(server.PromptServer(loop))
    loop.run_until_complete(nodes.init_builtin_extra_nodes())
    before = set(nodes.NODE_CLASS_MAPPINGS)
    ok = loop.run_until_complete(nodes.load_custom_node(sys.argv[1]))
    added = set(nodes.NODE_CLASS_MAPPINGS) - before
    error = None if ok else stream.getvalue().strip().splitlines()[-1:] or ["failed"]
    print("RESULT" + json.dumps({"nodes": len(added), "error": error and error[0]}))
    """
)


def commit_date(mirror: Path) -> str:
    git = ["git", f"--git-dir={mirror}", "log", "-1", "--format=%cI", "HEAD"]
    return subprocess.run(git, check=True, capture_output=True, text=True).stdout.strip()


def extract_pack(name: str, folder: Path) -> int:
    """The pack's files plus the submodules its installer would clone; returns the files skipped."""
    mirror = MIRRORS / PACKS[name] / "repo"
    skipped = extract(mirror, folder)
    for sub, inside in SUBMODULES.get(name, []):
        since = f"--before={commit_date(mirror)}"
        git = ["git", f"--git-dir={MIRRORS / sub / 'repo'}", "rev-list", "-1", since]
        done = subprocess.run([*git, "HEAD"], check=True, capture_output=True, text=True)
        rev = done.stdout.strip()
        skipped += extract(MIRRORS / sub / "repo", folder / inside, rev)
    return skipped


def extract(mirror: Path, folder: Path, rev: str = "HEAD") -> int:
    """Write the files of the mirror's `rev` under `folder`; returns how many were absent from the
    mirror (large binaries a partial fetch left out), which are skipped."""
    git = ["git", f"--git-dir={mirror}"]
    listing = subprocess.run([*git, "ls-tree", "-r", "-z", rev], check=True, capture_output=True).stdout
    entries = []
    for record in listing.split(b"\0"):
        if record:
            meta, path = record.split(b"\t", 1)
            mode, kind, sha = meta.split()
            if kind == b"blob" and mode != b"120000":
                entries.append((sha, path.decode()))
    batch = subprocess.run(
        [*git, "cat-file", "--batch"], input=b"".join(sha + b"\n" for sha, _ in entries), capture_output=True
    ).stdout
    missing, offset = 0, 0
    for _, path in entries:
        end = batch.index(b"\n", offset)
        header = batch[offset:end].split()
        offset = end + 1
        if header[-1] == b"missing":
            missing += 1
            continue
        size = int(header[2])
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(batch[offset : offset + size])
        offset += size + 1
    return missing


def probe(python: str, script: str, args: list[str], cwd: Path, timeout: float) -> dict[str, object]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(
            [python, "-c", script, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"nodes": 0, "error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT"):
            return json.loads(line[len("RESULT") :])
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"nodes": 0, "error": f"probe crashed: {tail}"}


def short(error: object) -> str:
    text = str(error or "").strip().splitlines()
    first = text[0] if text else ""
    return first.split(" module for custom nodes: ")[-1][:110]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packs", help="comma-separated subset of: " + ", ".join(PACKS))
    parser.add_argument("--comfy-src", default="/tmp/comfy/ComfyUI")
    parser.add_argument("--comfy-python", default="/tmp/comfy/venv/bin/python")
    parser.add_argument("--loom-python", default="/work/main/.venv/bin/python")
    parser.add_argument(
        "--deps",
        default="/tmp/packdeps",
        help="folder holding the packs' requirements (pip install --target), on both sides' sys.path",
    )
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--keep", action="store_true", help="keep the extracted packs")
    parser.add_argument(
        "--smoke", action="store_true", help="also run bench/pack_smoke.json's workflows on both servers"
    )
    parser.add_argument("--ports", default="19053,19054", help="ComfyUI's and Loom's ports for --smoke")
    options = parser.parse_args()
    chosen = options.packs.split(",") if options.packs else list(PACKS)
    work = Path(tempfile.mkdtemp(prefix="loom-packs-"))
    site = subprocess.run(
        [options.comfy_python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    rows = []
    try:
        for name in chosen:
            folder = work / name
            skipped = extract_pack(name, folder)
            if skipped:
                print(f"{name}: {skipped} files absent from the mirror, skipped", file=sys.stderr)
            loom_args = [str(folder), site, options.deps]
            loom = probe(options.loom_python, LOOM_PROBE, loom_args, LOOM, options.timeout)
            comfy_args = [str(folder), options.comfy_src, options.deps]
            comfy = probe(options.comfy_python, COMFY_PROBE, comfy_args, work, options.timeout)
            rows.append((name, loom, comfy))
            print(f"{name}: Loom {loom['nodes']} ComfyUI {comfy['nodes']}", file=sys.stderr, flush=True)
        smoke: dict[str, list[tuple[str, str]]] = {}
        if options.smoke:
            from pack_smoke import run_smoke  # bench/, beside this script

            # The packs extracted above are custom_nodes/<name> for both servers.
            for name in chosen:
                (work / "custom_nodes").mkdir(exist_ok=True)
                (work / "custom_nodes" / name).symlink_to(work / name)
            ports = tuple(int(p) for p in options.ports.split(","))
            smoke = run_smoke(chosen, work, options.deps, (ports[0], ports[1]))
    finally:
        if not options.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{'pack':26} {'Loom':>5} {'Comfy':>5} {'ratio':>6}  Loom error / ComfyUI error")
    loom_total = comfy_total = 0
    for name, loom, comfy in rows:
        ln, cn = int(loom["nodes"]), int(comfy["nodes"])  # type: ignore[call-overload]
        loom_total, comfy_total = loom_total + ln, comfy_total + cn
        ratio = f"{ln / cn:6.0%}" if cn else "     -"
        print(f"{name:26} {ln:5} {cn:5} {ratio}  {short(loom.get('error'))}")
        if comfy.get("error"):
            print(f"{'':46}ComfyUI: {short(comfy['error'])}")
        for node_id, why in list(dict(loom.get("node_errors") or {}).items())[:3]:
            print(f"{'':46}node {node_id}: {short(why)}")
    if smoke:
        print("\nSmoke workflows (bench/pack_smoke.json), saved images of ComfyUI vs Loom:")
        for name, results in smoke.items():
            for flow, result in results:
                print(f"{name:26} {flow:28} {result}")
        same = sum(r == "same pixels" for rows in smoke.values() for _, r in rows)
        print(f"{same}/{sum(len(rows) for rows in smoke.values())} smoke workflows give the same pixels.")
    share = f"{loom_total / comfy_total:.1%}" if comfy_total else "-"
    totals = f"{loom_total} of the {comfy_total} nodes ComfyUI registers"
    print(f"Loom registers {totals} from {len(rows)} packs ({share}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
