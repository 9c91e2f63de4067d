"""Legacy group nodes: Loom's headless UI → API conversion against ComfyUI's own front end.

For each workflow (a JSON file, or a PNG with a `workflow` chunk), three prompts are compared:
- Loom's `ui_to_api`;
- the `prompt` chunk of a PNG: what the front end that saved it queued (older front ends, which ran a
  group node's inner nodes under the ids `<instance id>:<index>`);
- with --browser, the pinned comfyui-frontend-package's `app.graphToPrompt()` in headless Chromium,
  Loom serving that front end (`--front-end comfy`) on 127.0.0.1:PORT. Newer front ends turn a loaded
  group node into plain nodes and then into a subgraph, so their node ids differ.
Ids are not compared: each node is named by what it computes (its class, literal inputs and, recursively,
what its links come from), so two prompts match when they compute the same graph.

    OMP_NUM_THREADS=1 .venv/bin/python bench/group_node_frontend.py [FILE.png|json...] [--fixtures]
        [--browser] [--port N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from engine.ui_workflow import ui_to_api  # noqa: E402
from nodes import builtin_registry  # noqa: E402

CHROMIUM = os.environ.get("LOOM_CHROMIUM", "/usr/bin/chromium")
READY = "() => window.app && window.app.graph && window.app.extensionManager?.setting"
QUEUE = """async (workflow) => {
    await app.loadGraphData(workflow);
    const prompt = await app.graphToPrompt();
    return prompt.output;
}"""


def read(path: Path) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The workflow, and the prompt a PNG recorded (None for JSON files)."""
    if path.suffix.lower() != ".png":
        return json.loads(path.read_text()), None
    from PIL import Image

    info = Image.open(path).info
    prompt = json.loads(info["prompt"]) if "prompt" in info else None
    return json.loads(info["workflow"]), prompt


def _literal(value: Any) -> Any:
    # 5 and 5.0 are the same JSON number to the front end; the server's recorded prompt writes 5.0.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def signatures(prompt: dict[str, Any], deep: bool) -> Counter[str]:
    """Each node named by what it computes, independent of ids: its class, literal inputs and what its
    links come from (the source's class and output, or with `deep` the source's whole signature)."""
    memo: dict[str, str] = {}

    def sign(node_id: str, depth: int = 0) -> str:
        if node_id in memo:
            return memo[node_id]
        entry = prompt.get(node_id)
        if entry is None or depth > 200:
            return f"<missing {node_id}>"
        parts = []
        for name, value in sorted(entry["inputs"].items()):
            if _is_link(value):
                source = prompt.get(str(value[0]), {}).get("class_type", "?")
                text = f"<{sign(str(value[0]), depth + 1) if deep else source}>[{value[1]}]"
            else:
                text = json.dumps(_literal(value), sort_keys=True)
            parts.append(f"{name}={text}")
        memo[node_id] = f"{entry['class_type']}({', '.join(parts)})"
        return memo[node_id]

    return Counter(sign(node_id) for node_id in prompt)


def compare_graphs(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Prompts whose ids differ (the front end now makes a subgraph of a group node)."""
    mine, other = signatures(ours, deep=False), signatures(theirs, deep=False)
    found = [f"only Loom: {s}" for s in mine - other] + [f"only front end: {s}" for s in other - mine]
    if not found and signatures(ours, deep=True) != signatures(theirs, deep=True):
        found = ["the same nodes, wired differently"]
    print(
        f"  {label}: {'same graph' if not found else f'{len(found)} differences'} "
        f"({len(ours)} nodes vs {len(theirs)})"
    )
    for line in found:
        print(f"    {line[:300]}")
    return not found


def compare_by_id(label: str, ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Prompts with the same ids (a PNG's recorded prompt). Inputs the recorded prompt lacks on a node of
    the same class are listed apart: the node type gained them after the image was made."""
    found: list[str] = []
    newer: list[str] = []
    for node_id in sorted(set(ours) | set(theirs)):
        a, b = ours.get(node_id), theirs.get(node_id)
        if a is None or b is None:
            found.append(f"#{node_id} only in {'the front end' if a is None else 'Loom'}")
            continue
        if a["class_type"] != b["class_type"]:
            found.append(f"#{node_id} {a['class_type']} vs {b['class_type']}")
            continue
        for name in sorted(set(a["inputs"]) | set(b["inputs"])):
            mine, other = a["inputs"].get(name), b["inputs"].get(name)
            if name not in b["inputs"]:
                newer.append(f"#{node_id} {a['class_type']}.{name}={mine!r}")
            elif _literal(mine) != _literal(other):
                found.append(f"#{node_id} {a['class_type']}.{name}: Loom {mine!r}, front end {other!r}")
    verdict = "same" if not found else f"{len(found)} differences"
    print(f"  {label}: {verdict} ({len(ours)} nodes vs {len(theirs)})")
    for line in found:
        print(f"    {line}")
    if newer:
        print(f"    inputs newer than the recorded prompt: {', '.join(newer)}")
    return not found


def without_recorded_extras(prompt: dict[str, Any]) -> dict[str, Any]:
    return {k: {"inputs": v["inputs"], "class_type": v["class_type"]} for k, v in prompt.items()}


class Browser:
    """Loom serving ComfyUI's front end, driven by headless Chromium."""

    def __init__(self, port: int, work: Path) -> None:
        folders = [f"--{name}-directory={work / name}" for name in ("output", "input", "temp")]
        command = [
            sys.executable,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--front-end",
            "comfy",
        ]
        self.server = subprocess.Popen(
            command + folders,
            cwd=ROOT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.url = f"http://127.0.0.1:{port}"
        self._wait()
        request = urllib.request.Request(
            self.url + "/api/settings",
            json.dumps({"Comfy.TutorialCompleted": True}).encode(),
            {"Content-Type": "application/json"},
            method="POST",
        )
        urllib.request.urlopen(request).close()
        from playwright.sync_api import sync_playwright

        self.playwright = sync_playwright().start()
        self.browser = self.playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        self.page = self.browser.new_page()
        self.page.goto(self.url)
        self.page.wait_for_function(READY, timeout=120_000)

    def _wait(self) -> None:
        for _ in range(240):
            try:
                urllib.request.urlopen(self.url + "/api/system_stats").close()
                return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError("Loom did not start")

    def prompt(self, workflow: dict[str, Any]) -> dict[str, Any]:
        return self.page.evaluate(QUEUE, workflow)

    def close(self) -> None:
        self.browser.close()
        self.playwright.stop()
        self.server.terminate()
        self.server.wait(30)


def fixtures() -> list[tuple[str, dict[str, Any]]]:
    """The workflows tests/engine/test_ui_groupnodes.py builds (their nodes carry the positions the front
    end needs to unpack a group)."""
    from tests.engine import test_ui_groupnodes as tests

    return [
        ("old-style widgets", tests.sampler_workflow()),
        ("two instances", tests.two_instances_workflow()),
        ("shared input names", tests.shared_names_workflow()),
        ("chain", tests.chain_workflow(0)),
        ("muted chain", tests.chain_workflow(2)),
        ("bypassed chain", tests.chain_workflow(4)),
        ("inner primitive and reroute", tests.mixed_workflow()),
        ("hidream e1 shape", tests.ip2p_workflow()),
        ("inpaint shape", tests.inpaint_workflow()),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workflows", nargs="*", type=Path)
    parser.add_argument("--browser", action="store_true", help="also ask the pinned front end in Chromium")
    parser.add_argument("--fixtures", action="store_true", help="also the workflows of the group-node tests")
    parser.add_argument("--port", type=int, default=19140)
    args = parser.parse_args()
    named = [(path.name, *read(path)) for path in args.workflows]
    if args.fixtures:
        named += [(f"test fixture {name}", workflow, None) for name, workflow in fixtures()]
    registry = builtin_registry()
    browser = None
    if args.browser:
        import tempfile

        browser = Browser(args.port, Path(tempfile.mkdtemp(prefix="loom-groupnodes-")))
    same = True
    try:
        for label, workflow, recorded in named:
            groups = list((workflow.get("extra") or {}).get("groupNodes") or {})
            print(f"{label}: group definitions {groups}")
            ours = ui_to_api(workflow, registry)
            if recorded is not None:
                same &= compare_by_id("recorded prompt", ours, without_recorded_extras(recorded))
            if browser is not None:
                same &= compare_graphs("front end now", ours, browser.prompt(workflow))
    finally:
        if browser is not None:
            browser.close()
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
