"""Compare Loom's /object_info with a CPU ComfyUI's, node by node, for every node both have.

Starts ComfyUI (from /tmp/comfy, see ../shared/tools/comfyui/) and Loom on loopback ports, unless
something already answers there, fetches both /object_info and prints, per shared node, where the
declarations differ: display name, category, output-node flag, input names and order per section,
types, defaults, min/max/step and the other widget options, combo lists, and outputs (types, names,
list flags). Tooltips and descriptions are not compared. Combo lists of files (uploads, folders) are
compared only as "a list of files", since the two servers have different folders.

    python bench/object_info_compare.py [--comfy /tmp/comfy] [--comfy-port 8316] [--loom-port 8216]
                                        [--comfy-json FILE] [--only Node1,Node2] [--quiet]

--comfy-json reads ComfyUI's /object_info from a file saved earlier instead of starting ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Widget options whose values must agree; tooltips and front-end hints are left out.
OPTION_KEYS = (
    "default",
    "min",
    "max",
    "step",
    "round",
    "multiline",
    "dynamicPrompts",
    "lazy",
    "forceInput",
    "control_after_generate",
    "display",
    "image_upload",
    "image_folder",
    "advanced",
)
FILE_LIST_HINTS = ("image_upload", "remote", "image_folder")


def fetch(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def answering(port: int) -> bool:
    try:
        fetch(f"http://127.0.0.1:{port}/object_info", timeout=2.0)
        return True
    except OSError:
        return False


def start(command: list[str], cwd: Path, port: int, name: str, log: Path) -> subprocess.Popen[bytes] | None:
    """Start a server unless one answers on the port already; wait until /object_info answers."""
    if answering(port):
        print(f"{name}: using the server already on port {port}")
        return None
    process = subprocess.Popen(command, cwd=cwd, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with {process.returncode}; see {log}")
        if answering(port):
            return process
        time.sleep(0.5)
    process.terminate()
    raise SystemExit(f"{name} did not answer on port {port} within 180 s; see {log}")


def normalized_input(spec: list[Any]) -> tuple[str, list[Any] | None, dict[str, Any]]:
    """(type, combo options or None, options) of one input, whichever combo form it uses."""
    head = spec[0]
    options = dict(spec[1]) if len(spec) > 1 and isinstance(spec[1], dict) else {}
    if isinstance(head, list):
        return "COMBO", list(head), options
    if head == "COMBO":
        return "COMBO", list(options.pop("options", [])) if "options" in options else None, options
    return str(head), None, options


def is_file_list(options: dict[str, Any]) -> bool:
    return any(key in options for key in FILE_LIST_HINTS)


def compare_input(name: str, comfy: list[Any], loom: list[Any]) -> list[str]:
    c_type, c_choices, c_opts = normalized_input(comfy)
    l_type, l_choices, l_opts = normalized_input(loom)
    found = []
    if c_type != l_type:
        found.append(f"input {name}: type {c_type} vs {l_type}")
    files = is_file_list(c_opts) or is_file_list(l_opts)
    if c_type == l_type == "COMBO" and not files and c_choices is not None and c_choices != l_choices:
        found.append(f"input {name}: combo {c_choices} vs {l_choices}")
    for key in OPTION_KEYS:
        c_value, l_value = c_opts.get(key), l_opts.get(key)
        if key in ("multiline", "lazy", "forceInput", "dynamicPrompts", "image_upload"):
            c_value, l_value = bool(c_value), bool(l_value)
        if c_value != l_value:
            found.append(f"input {name}: {key} {c_value!r} vs {l_value!r}")
    return found


def compare_node(node_id: str, comfy: dict[str, Any], loom: dict[str, Any]) -> list[str]:
    found = []
    for key in ("category", "output_node"):
        if comfy.get(key) != loom.get(key):
            found.append(f"{key}: {comfy.get(key)!r} vs {loom.get(key)!r}")
    if (comfy.get("display_name") or node_id) != (loom.get("display_name") or node_id):
        found.append(f"display_name: {comfy.get('display_name')!r} vs {loom.get('display_name')!r}")
    for section in ("required", "optional", "hidden"):
        c_inputs = comfy["input"].get(section, {})
        l_inputs = loom["input"].get(section, {})
        if list(c_inputs) != list(l_inputs):
            found.append(f"{section} inputs: {list(c_inputs)} vs {list(l_inputs)}")
        for name in c_inputs.keys() & l_inputs.keys():
            if section == "hidden":
                if c_inputs[name] != l_inputs[name]:
                    found.append(f"hidden {name}: {c_inputs[name]!r} vs {l_inputs[name]!r}")
                continue
            found += compare_input(name, c_inputs[name], l_inputs[name])
    for key in ("output", "output_name", "output_is_list"):
        if list(comfy.get(key, [])) != list(loom.get(key, [])):
            found.append(f"{key}: {comfy.get(key)} vs {loom.get(key)}")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--comfy-port", type=int, default=8316)
    parser.add_argument("--loom-port", type=int, default=8216)
    parser.add_argument(
        "--only", default="", help="comma-separated node ids to compare (default: all shared)"
    )
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    parser.add_argument("--comfy-json", type=Path, help="ComfyUI's /object_info saved as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="loom_object_info_"))
    for folder in ("input", "output", "temp"):
        (work / folder).mkdir()
    comfy_cmd = [str(args.comfy / "venv/bin/python"), "main.py", "--cpu", "--listen", "127.0.0.1"]
    comfy_cmd += ["--port", str(args.comfy_port)]
    loom_cmd = [sys.executable, str(ROOT / "main.py"), "--port", str(args.loom_port), "--cpu"]
    loom_cmd += ["--disable-all-custom-nodes"]
    loom_cmd += ["--input-directory", str(work / "input"), "--output-directory", str(work / "output")]
    loom_cmd += ["--temp-directory", str(work / "temp"), "--database", str(work / "loom.db")]
    started = [start(loom_cmd, ROOT, args.loom_port, "Loom", work / "loom.log")]
    if args.comfy_json is None:
        started.append(
            start(comfy_cmd, args.comfy / "ComfyUI", args.comfy_port, "ComfyUI", work / "comfyui.log")
        )
    try:
        if args.comfy_json is None:
            comfy = fetch(f"http://127.0.0.1:{args.comfy_port}/object_info", timeout=60)
        else:
            comfy = json.loads(args.comfy_json.read_text())
        loom = fetch(f"http://127.0.0.1:{args.loom_port}/object_info", timeout=60)
    finally:
        for process in started:
            if process is not None:
                process.terminate()
                process.wait(timeout=30)

    shared = sorted(comfy.keys() & loom.keys())
    if args.only:
        wanted = {name.strip() for name in args.only.split(",") if name.strip()}
        missing = sorted(wanted - loom.keys())
        if missing:
            print(f"not in Loom: {', '.join(missing)}")
        shared = [name for name in shared if name in wanted]
    differing = 0
    total = 0
    for node_id in shared:
        found = compare_node(node_id, comfy[node_id], loom[node_id])
        total += len(found)
        differing += bool(found)
        if found and not args.quiet:
            print(f"\n{node_id}")
            for line in found:
                print(f"  - {line}")
    loom_only = sorted(loom.keys() - comfy.keys())
    print(
        f"\nComfyUI {len(comfy)} nodes, Loom {len(loom)} nodes, shared {len(shared)} compared: "
        f"{len(shared) - differing} identical, {differing} with {total} differences"
    )
    if loom_only and not args.only:
        print(f"Loom-only nodes ({len(loom_only)}): {', '.join(loom_only)}")


if __name__ == "__main__":
    main()
