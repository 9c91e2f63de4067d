"""Engine overhead: validation + planning, per-node executor overhead, fully cached re-runs.

Graphs are chains of ImageInvert on a 1x1 image (ComfyUI's figures in ../shared/FACTS.md use the
same shape). Per-node overhead is measured side by side with calling the same node functions
directly, so it excludes the node's own work. Run: `make bench` or `python bench/engine_bench.py`.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from engine import folders
from engine.cache import OutputCache
from engine.executor import Executor
from engine.graph import plan, validate_prompt
from nodes import builtin_registry
from nodes.image.basic import ImageInvert

TARGETS = {"validate_1000_ms": 50.0, "cached_10_ms": 2.0, "overhead_per_node_ms": 0.2}


def chain(length: int) -> dict[str, Any]:
    prompt: dict[str, Any] = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0}}
    }
    for i in range(2, length):
        prompt[str(i)] = {"class_type": "ImageInvert", "inputs": {"image": [str(i - 1), 0]}}
    prompt[str(length)] = {"class_type": "ShowSize", "inputs": {"image": [str(length - 1), 0]}}
    return prompt


class ShowSize:
    """An output node that does no I/O, so the chain measures the engine and not PNG encoding."""

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {"required": {"image": ("IMAGE",)}}

    RETURN_TYPES = ()
    FUNCTION = "show"
    OUTPUT_NODE = True

    def show(self, image: Any) -> dict[str, Any]:
        return {"ui": {"shape": [list(image.shape)]}}


def best_ms(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def direct_calls_ms(length: int, repeats: int) -> float:
    """The same node functions called in a plain loop: the floor the executor is compared with."""
    node = ImageInvert()
    image = torch.zeros(1, 1, 1, 3)

    def calls() -> None:
        value = image
        for _ in range(length - 2):
            value = node.run(image=value)

    return best_ms(calls, repeats)


def measure(length: int) -> dict[str, float]:
    registry = builtin_registry()
    registry.register(ShowSize)
    prompt = chain(length)
    repeats = 5 if length >= 1000 else 20

    def validate_and_plan() -> None:
        checked = validate_prompt(registry, prompt)
        plan(checked.prompt, checked.outputs)

    checked = validate_prompt(registry, prompt)
    assert checked.ok, checked.node_errors
    validate_ms = best_ms(validate_and_plan, repeats)

    uncached = Executor(registry, OutputCache("none"))
    run_ms = best_ms(lambda: uncached.execute(checked.prompt, "bench", checked.outputs), repeats)
    overhead_ms = (run_ms - direct_calls_ms(length, repeats)) / length

    cached = Executor(registry)
    cached.execute(checked.prompt, "warm", checked.outputs)
    cached_ms = best_ms(lambda: cached.execute(checked.prompt, "bench", checked.outputs), repeats)
    return {"validate": validate_ms, "run": run_ms, "overhead": overhead_ms, "cached": cached_ms}


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        folders.configure(folders.Folders.under(Path(scratch)))
        results = {length: measure(length) for length in (10, 100, 1000)}
    print(f"{'nodes':>6} {'validate+plan ms':>17} {'run ms':>9} {'overhead ms/node':>17} {'cached ms':>17}")
    for length, r in results.items():
        print(
            f"{length:>6} {r['validate']:>17.2f} {r['run']:>9.2f} {r['overhead']:>17.4f} {r['cached']:>17.2f}"
        )
    ratios = {
        "validate_1000_ms": results[1000]["validate"] / TARGETS["validate_1000_ms"],
        "cached_10_ms": results[10]["cached"] / TARGETS["cached_10_ms"],
        "overhead_per_node_ms": max(r["overhead"] for r in results.values())
        / TARGETS["overhead_per_node_ms"],
    }
    verdict = "PASS" if all(v <= 1.0 for v in ratios.values()) else "FAIL"
    print(
        f"summary: {verdict} — measured/target: validate 1000 nodes {ratios['validate_1000_ms']:.2f}, "
        f"cached 10-node re-run {ratios['cached_10_ms']:.2f}, "
        f"per-node overhead {ratios['overhead_per_node_ms']:.2f} (≤ 1.00 meets the target)"
    )


if __name__ == "__main__":
    main()
