"""ComfyUI's workflow templates and ComfyUI_examples workflows for Flux.1, SD3.5, Z-Image, Qwen-Image and
Chroma, converted (UI → API, subgraphs flattened) and validated by Loom against tiny stand-in files named as
they require.

Every model file a workflow names (UNETLoader, CheckpointLoaderSimple, the CLIP loaders, VAELoader, LoRA,
ControlNet, style and vision loaders) is written as a tiny random-weight file of the matching family
(bench/family_standins.py), input images as small PNGs. With --run, they also run end to end at 64×64 (a
ResolutionSelector at 0.1 MP, ImageScaleToTotalPixels at 0.01 MP) and 2 steps (edit graphs with their
input image).

    OMP_NUM_THREADS=1 .venv/bin/python bench/family_templates.py WORKFLOW.json|EXAMPLE.png... [--run]

The workflows are read from where they were downloaded (`pip download --no-deps
comfyui-workflow-templates-json`; ComfyUI_examples' PNGs, from `fetch github:comfyanonymous/ComfyUI_examples`,
are read for the workflow embedded in them); none is copied into the repository.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import engine  # noqa: E402, F401  (before diffusers: torchvision shim)
from bench.family_standins import (  # noqa: E402
    BUILT_IN_CHOICES,
    FILE_WIDGETS,
    NoStandIn,
    lora_for,
    pick,
    write_stand_ins,
)


def read_workflow(path: Path) -> dict[str, Any]:
    """A UI workflow from a JSON file, or the one a ComfyUI PNG carries in its `workflow` text chunk."""
    if path.suffix.lower() != ".png":
        return dict(json.loads(path.read_text()))
    from PIL import Image

    with Image.open(path) as image:
        text = getattr(image, "text", {}).get("workflow")
    if text is None:
        raise ValueError(f"{path.name} carries no workflow")
    return dict(json.loads(text))


def nodes_of(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = list(workflow.get("nodes", []))
    for subgraph in workflow.get("definitions", {}).get("subgraphs", []):
        nodes += subgraph.get("nodes", [])
    return nodes


def prepare(workflow: dict[str, Any], models: Path, inputs: Path, made: dict[str, Path]) -> None:
    """Write a stand-in for every file a loader widget names, and an image for every LoadImage; LoRAs
    are made for the workflow's diffusion model."""
    from PIL import Image

    model: Path | None = None
    loras: list[Path] = []
    for node in nodes_of(workflow):
        values = node.get("widgets_values")
        if not isinstance(values, list):
            continue
        for index, kind in FILE_WIDGETS.get(node.get("type", ""), ()):
            built_in = BUILT_IN_CHOICES.get(node.get("type", ""), frozenset())
            if index < len(values) and isinstance(values[index], str) and values[index] not in built_in:
                target = models / kind / values[index]
                target.parent.mkdir(parents=True, exist_ok=True)
                if kind == "loras":
                    loras.append(target)
                    continue
                source = pick(kind, values[index], made)
                # LoRAs are made for the image model; a Lotus-D UNet only makes a depth map beside it.
                lotus = "lotus" in values[index].lower()
                if kind in ("diffusion_models", "checkpoints") and model is None and not lotus:
                    model = source
                shutil.copyfile(source, target)
                companion = source.parent / "llama_tokenizer"  # Llama 3's tokenizer: Loom ships none
                if kind == "text_encoders" and companion.is_dir():
                    shutil.copytree(companion, target.parent / companion.name, dirs_exist_ok=True)
        if node.get("type") == "LoadImage" and values and isinstance(values[0], str):
            Image.new("RGB", (64, 64), (200, 80, 40)).save(inputs / values[0].split(" [")[0])
    for target in loras:
        if model is None:
            raise NoStandIn(f"no stand-in for loras/{target.name}: the workflow loads no diffusion model")
        shutil.copyfile(lora_for(model), target)


def shrink(prompt: dict[str, Any]) -> None:
    """64×64 (0.1 MP where a ResolutionSelector sets the size, 0.01 MP where ImageScaleToTotalPixels
    does), two steps: a check that the graph runs, not a picture."""
    for node in prompt.values():
        inputs = node["inputs"]
        if node["class_type"] == "ResolutionSelector":
            inputs["megapixels"] = 0.1
        if node["class_type"] == "ImageScaleToTotalPixels":  # the depth graphs scale their input to 1 MP
            inputs["megapixels"] = 0.01
        for key in ("width", "height"):
            if isinstance(inputs.get(key), int):
                inputs[key] = 64
        if isinstance(inputs.get("steps"), int):
            inputs["steps"] = 2


def check(path: Path, run: bool, made: dict[str, Path], work: Path) -> tuple[str, str]:
    from engine import folders as loom_folders
    from engine.executor import Executor
    from engine.folders import Folders
    from engine.graph import validate_prompt
    from engine.ui_workflow import WorkflowConversionError, ui_to_api
    from nodes import builtin_registry

    registry = builtin_registry()
    root = Path(tempfile.mkdtemp(dir=work))
    folders = Folders.under(root, models_base=root / "models")
    (root / "input").mkdir(exist_ok=True)
    workflow = read_workflow(path)
    try:
        prepare(workflow, root / "models", folders.input, made)
    except NoStandIn as exc:
        return "no stand-in", str(exc)
    loom_folders.configure(folders)
    try:
        prompt = ui_to_api(workflow, registry)
    except WorkflowConversionError as exc:
        return "conversion error", str(exc)[:160]
    original = copy.deepcopy(prompt)  # validation unwraps list-valued widgets in place
    checked = validate_prompt(registry, prompt)
    # As ComfyUI, validation passes when some outputs are valid; the bench wants all of them.
    if not checked.ok or checked.node_errors:
        first = next(iter(checked.node_errors.values()), None) or str(checked.error)
        return "invalid", json.dumps(first)[:160]
    if not run:
        return "valid", f"{len(prompt)} nodes"
    shrink(original)
    checked = validate_prompt(registry, original)
    if not checked.ok or checked.node_errors:
        first = next(iter(checked.node_errors.values()), None) or str(checked.error)
        return "invalid when shrunk", json.dumps(first)[:160]
    start = time.perf_counter()
    result = Executor(registry).execute(checked.prompt, "t", checked.outputs)
    if result.status != "success":
        return "run error", str(result.error.get("exception_message", result.error))[:160]
    return "ran", f"{len(prompt)} nodes, {time.perf_counter() - start:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("workflows", nargs="+", type=Path)
    parser.add_argument("--run", action="store_true", help="also run them at 64x64, 2 steps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="loom-templates-") as tmp:
        work = Path(tmp)
        made = write_stand_ins(work / "standins")
        rows = [(p.name, *check(p, args.run, made, work)) for p in args.workflows]
    width = max(len(r[0]) for r in rows)
    print(f"{'workflow':<{width}}  {'result':<16}  detail")
    for name, result, detail in rows:
        print(f"{name:<{width}}  {result:<16}  {detail}")
    good = sum(r[1] in ("valid", "ran") for r in rows)
    print(f"\n{good} of {len(rows)} workflows {'ran' if args.run else 'validated'} on Loom")


if __name__ == "__main__":
    main()
