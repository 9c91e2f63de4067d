"""ComfyUI's workflow templates and ComfyUI_examples workflows for Z-Image, Qwen-Image and Chroma, converted
(UI → API, subgraphs flattened) and validated by Loom against tiny stand-in files named as they require.

Every model file a workflow names (UNETLoader, CLIPLoader, VAELoader, LoRA loaders) is written as a tiny
random-weight file of the matching family (tests/nodes/flow_fixtures_new.py), input images as small PNGs.
With --run, they also run end to end at 64×64 and 2 steps (edit graphs with their input image).

    OMP_NUM_THREADS=1 .venv/bin/python bench/family_templates.py WORKFLOW.json... [--run]

The workflows are read from where they were downloaded (`pip download --no-deps
comfyui-workflow-templates-json`, and the PNGs of `fetch github:comfyanonymous/ComfyUI_examples` with their
embedded workflow saved as JSON); none is copied into the repository.
"""

from __future__ import annotations

import argparse
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

# The widget positions of the file names each loader takes, and the folder they are in.
FILE_WIDGETS = {
    "UNETLoader": ((0, "diffusion_models"),),
    "CLIPLoader": ((0, "text_encoders"),),
    "DualCLIPLoader": ((0, "text_encoders"), (1, "text_encoders")),
    "VAELoader": ((0, "vae"),),
    "LoraLoaderModelOnly": ((0, "loras"),),
    "LoraLoader": ((0, "loras"),),
}


def stand_ins(work: Path) -> dict[str, Path]:
    """One tiny file of each kind, by the key that picks it."""
    import torch
    from safetensors.torch import save_file

    from tests.nodes.flow_fixtures_new import write_chroma_files, write_qwen_image_files, write_zimage_files

    made: dict[str, Path] = {}
    writers = {"zimage": write_zimage_files, "qwen": write_qwen_image_files, "chroma": write_chroma_files}
    for name, writer in writers.items():
        writer(work / name)
    made["zimage"] = work / "zimage" / "diffusion_models" / "z_image_turbo_bf16.safetensors"
    made["qwen_image"] = work / "qwen" / "diffusion_models" / "qwen_image_bf16.safetensors"
    made["chroma"] = work / "chroma" / "diffusion_models" / "chroma-unlocked-v35.safetensors"
    made["qwen_3"] = work / "zimage" / "text_encoders" / "qwen_3_4b.safetensors"
    made["qwen_2.5"] = work / "qwen" / "text_encoders" / "qwen_2.5_vl_7b_fp8_scaled.safetensors"
    made["t5"] = work / "chroma" / "text_encoders" / "t5xxl_fp16.safetensors"
    made["ae"] = work / "chroma" / "vae" / "ae.safetensors"
    made["qwen_image_vae"] = work / "qwen" / "vae" / "qwen_image_vae.safetensors"
    lora = work / "lora.safetensors"
    save_file({"unused.lora_down.weight": torch.zeros(1, 1)}, str(lora))
    made["lora"] = lora
    return made


def pick(kind: str, name: str, made: dict[str, Path]) -> Path:
    lower = name.lower()
    if kind == "loras":
        return made["lora"]
    if kind == "vae":
        return made["qwen_image_vae"] if "qwen" in lower or "wan" in lower else made["ae"]
    if kind == "text_encoders":
        if "qwen_3" in lower or "qwen3" in lower:
            return made["qwen_3"]
        return made["qwen_2.5"] if "qwen" in lower else made["t5"]
    if "qwen" in lower:
        return made["qwen_image"]
    return made["chroma"] if "chroma" in lower else made["zimage"]


def nodes_of(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = list(workflow.get("nodes", []))
    for subgraph in workflow.get("definitions", {}).get("subgraphs", []):
        nodes += subgraph.get("nodes", [])
    return nodes


def prepare(workflow: dict[str, Any], models: Path, inputs: Path, made: dict[str, Path]) -> None:
    """Write a stand-in for every file a loader widget names, and an image for every LoadImage."""
    from PIL import Image

    for node in nodes_of(workflow):
        values = node.get("widgets_values")
        if not isinstance(values, list):
            continue
        for index, kind in FILE_WIDGETS.get(node.get("type", ""), ()):
            if index < len(values) and isinstance(values[index], str):
                target = models / kind / values[index]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(pick(kind, values[index], made), target)
        if node.get("type") == "LoadImage" and values and isinstance(values[0], str):
            Image.new("RGB", (64, 64), (200, 80, 40)).save(inputs / values[0].split(" [")[0])


def shrink(prompt: dict[str, Any]) -> None:
    """64×64, two steps: a check that the graph runs, not a picture."""
    for node in prompt.values():
        inputs = node["inputs"]
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
    workflow = json.loads(path.read_text())
    prepare(workflow, root / "models", folders.input, made)
    loom_folders.configure(folders)
    if True:
        try:
            prompt = ui_to_api(workflow, registry)
        except WorkflowConversionError as exc:
            return "conversion error", str(exc)[:160]
        checked = validate_prompt(registry, prompt)
        if not checked.ok:
            first = next(iter(checked.node_errors.values()))
            return "invalid", json.dumps(first)[:160]
        if not run:
            return "valid", f"{len(prompt)} nodes"
        shrink(checked.prompt)
        checked = validate_prompt(registry, checked.prompt)
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
        made = stand_ins(work / "standins")
        rows = [(p.name, *check(p, args.run, made, work)) for p in args.workflows]
    width = max(len(r[0]) for r in rows)
    print(f"{'workflow':<{width}}  {'result':<16}  detail")
    for name, result, detail in rows:
        print(f"{name:<{width}}  {result:<16}  {detail}")
    good = sum(r[1] in ("valid", "ran") for r in rows)
    print(f"\n{good} of {len(rows)} workflows {'ran' if args.run else 'validated'} on Loom")


if __name__ == "__main__":
    main()
