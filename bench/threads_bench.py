"""The thread policy against fixed 1 and 2 threads: KSampler + VAEDecode, idle and beside a busy neighbour.

Each run changes the seed, so the loader and text encoders stay cached and only sampling and decoding run
(both under the policy, `engine.threads`). Modes alternate within each repeat; the neighbour is a second
process spinning one core for the whole block. Models: the shipped 64×64 model (default) or, with
`--model sd15`, a random-weight SD1.5-layout file: /tmp/benchmodels/comfy_sd15.safetensors
(bench/make_comfy_sd15.py) when present, else bench/load_bench.py's (written to /tmp if missing).

Run: `python bench/threads_bench.py [--model shipped|sd15] [--repeats 3]`. Target (issue 16): the policy
within 10 % of the better of 1 and 2 threads, in both conditions. The machine's load average is printed:
other processes on a shared machine move every figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.load_bench import SHARED_CHECKPOINT, make_checkpoint  # noqa: E402
from engine import folders, threads  # noqa: E402
from engine.executor import Executor  # noqa: E402
from engine.graph import validate_prompt  # noqa: E402
from nodes import builtin_registry  # noqa: E402

MODES: dict[str, int | None] = {"policy": None, "1 thread": 1, "2 threads": 2}


def workflow(name: str, size: int, steps: int, seed: int) -> dict[str, Any]:
    return {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}},
        "2": {"class_type": "EmptyLatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["1", 1]}},
        "4": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["1", 1]}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 7.0,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1.0,
                "model": ["1", 0],
                "positive": ["3", 0],
                "negative": ["4", 0],
                "latent_image": ["2", 0],
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "PreviewImage", "inputs": {"images": ["6", 0]}},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("shipped", "sd15"), default="shipped")
    parser.add_argument("--size", type=int, default=None, help="image side (64 shipped, 256 sd15)")
    parser.add_argument("--steps", type=int, default=None, help="steps (20 shipped, 2 sd15)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    shipped = args.model == "shipped"
    size = args.size or (64 if shipped else 256)
    steps = args.steps or (20 if shipped else 2)
    source = ROOT / "models" / "checkpoints" / "loom_default.safetensors"
    if not shipped:  # bench/make_comfy_sd15.py's file when present (the sampling and load benches use it)
        source = SHARED_CHECKPOINT if SHARED_CHECKPOINT.is_file() else make_checkpoint()

    with tempfile.TemporaryDirectory() as scratch:
        configured = folders.Folders.under(Path(scratch))
        configured.models["checkpoints"] = [source.parent]
        folders.configure(configured)
        registry = builtin_registry()
        executor = Executor(registry)
        seed = iter(range(1, 10**6))

        def run(mode: int | None) -> float:
            threads.configure(mode)
            checked = validate_prompt(registry, workflow(source.name, size, steps, next(seed)))
            start = time.perf_counter()
            result = executor.execute(checked.prompt, "bench", checked.outputs)
            assert result.status == "success", result.error
            return time.perf_counter() - start

        chosen: list[int] = []
        decide = threads.ThreadPolicy.threads_for

        def recording(policy: threads.ThreadPolicy, work: float) -> int:
            chosen.append(decide(policy, work))
            return chosen[-1]

        threads.ThreadPolicy.threads_for = recording  # type: ignore[method-assign]  # report the picks
        run(1)  # loads the checkpoint and encodes both prompts once; later runs sample and decode only
        table: dict[tuple[str, str], list[float]] = {}
        picks: dict[str, list[list[int]]] = {}
        for neighbour in ("idle", "busy neighbour"):
            spinner = None
            if neighbour != "idle":
                spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
            try:
                for repeat in range(args.repeats):
                    order = list(MODES.items())
                    for name, mode in order if repeat % 2 == 0 else order[::-1]:
                        chosen.clear()
                        table.setdefault((neighbour, name), []).append(run(mode))
                        if mode is None:
                            picks.setdefault(neighbour, []).append(chosen[:])
            finally:
                if spinner is not None:
                    spinner.kill()
                    spinner.wait()
            print(f"{neighbour}: done, load average {os.getloadavg()[0]:.1f}", flush=True)

    print(f"\n{args.model} model, {size}², {steps} steps, KSampler + VAEDecode, {args.repeats} runs per cell")
    print(f"{'':16s} {'':10s} {'min s':>8s} {'median s':>9s}")
    for (neighbour, name), times in table.items():
        print(f"{neighbour:16s} {name:10s} {min(times):8.2f} {statistics.median(times):9.2f}")
    summary = []
    for neighbour in ("idle", "busy neighbour"):
        medians = {name: statistics.median(table[(neighbour, name)]) for name in MODES}
        best = min(medians["1 thread"], medians["2 threads"])
        summary.append(f"{neighbour}: policy/best-fixed {medians['policy'] / best:.2f}")
    for neighbour, runs in picks.items():
        print(f"policy's picks, {neighbour} (KSampler, VAEDecode per run): {runs}")
    print("\n" + "; ".join(summary) + f" (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
