"""Evaluate a text-to-image checkpoint on prompts of the caption grammar, judged by `classify`.

Prints per-attribute accuracy over single-object prompts (each attribute counted where the prompt states
it, shape always; `found_unplaced`: an object appears for prompts that leave the position out), two-object
binding (every object's stated attributes found on one object each), the distinct placements the five
position words give with one seed, determinism, model load time and time per image.
`--validate` judges rendered ground truth for the same prompts instead, which must score 100 %.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .classify import binding_ok, detect, matches
from .data import POSITIONS, Obj, caption, parse_prompt, prompt_of, random_object, random_scene, render

ATTRIBUTES = ("colour", "shape", "position", "size")
PROMPT_KEEP = {"colour": 0.8, "size": 0.8, "position": 0.8}
PAIR_KEEP = {"colour": 1.0, "size": 0.5, "position": 1.0}


@dataclass
class Scores:
    hits: Counter[str] = field(default_factory=Counter)
    totals: Counter[str] = field(default_factory=Counter)

    def add(self, name: str, ok: bool) -> None:
        self.hits[name] += ok
        self.totals[name] += 1

    def table(self) -> dict[str, float]:
        return {k: self.hits[k] / self.totals[k] for k in self.totals}


def eval_prompts(count: int, pairs: int, seed: int) -> tuple[list[str], list[str]]:
    """`count` single-object and `pairs` two-object prompts of the grammar from a fixed RNG."""
    rng = random.Random(seed)
    singles = [caption([random_object(rng)], rng, PROMPT_KEEP) for _ in range(count)]
    doubles = [caption(random_scene(rng, 1.0), rng, PAIR_KEEP) for _ in range(pairs)]
    return singles, doubles


def judge(images: np.ndarray, prompts: list[str], scores: Scores) -> None:
    for image, prompt in zip(images, prompts, strict=True):
        spec = parse_prompt(prompt)
        found = detect(image, max_objects=len(spec))
        if len(spec) == 1:
            scores.add("found", bool(found))
            if spec[0].position is None:
                scores.add("found_unplaced", bool(found))
            result = matches(found[0].obj, spec[0]) if found else dict.fromkeys(("shape", "colour"), False)
            for name in ATTRIBUTES:
                if name in result or getattr(spec[0], name) is not None:
                    scores.add(name, result.get(name, False))
        else:
            scores.add("binding", binding_ok(found, spec, ATTRIBUTES))
            scores.add("binding_colour_position", binding_ok(found, spec, ("colour", "position")))


def ground_truth(prompts: list[str], seed: int) -> np.ndarray:
    """Rendered images that satisfy each prompt (omitted attributes random)."""
    rng = random.Random(seed)
    images = []
    for prompt in prompts:
        spec = parse_prompt(prompt)
        while True:
            scene = random_scene(rng, 1.0 if len(spec) == 2 else 0.0)
            scene = [_complete(wanted, got) for wanted, got in zip(spec, scene, strict=True)]
            if len(scene) == 1 or (scene[0].position != scene[1].position):
                break
        images.append(render(scene, rng, jitter=0.06))
    return np.stack(images)


def _complete(wanted: Obj, got: Obj) -> Obj:
    return Obj(
        wanted.shape, wanted.colour or got.colour, wanted.size or got.size, wanted.position or got.position
    )


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/checkpoints/loom_default.safetensors")
    parser.add_argument("--count", type=int, default=300, help="single-object prompts")
    parser.add_argument("--pairs", type=int, default=100, help="two-object prompts")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cfg", type=float, default=7.0)
    parser.add_argument("--sampler", default="euler")
    parser.add_argument("--scheduler", default="normal")
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--validate", action="store_true", help="judge rendered ground truth instead")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    singles, doubles = eval_prompts(args.count, args.pairs, args.seed)
    scores = Scores()
    results: dict[str, object] = {}
    if args.validate:
        judge(ground_truth(singles + doubles, args.seed), singles + doubles, scores)
    else:
        results = _generate_and_judge(args, singles, doubles, scores)
    results["accuracy"] = scores.table()
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


def _generate_and_judge(
    args: argparse.Namespace, singles: list[str], doubles: list[str], scores: Scores
) -> dict[str, object]:
    import torch

    from engine.models.checkpoint import load_checkpoint

    from .generate import SamplerSettings, TextToImage

    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    import diffusers  # noqa: F401  (library imports are timed apart from the load itself)
    import transformers  # noqa: F401

    import_s = time.perf_counter() - start
    start = time.perf_counter()
    checkpoint = load_checkpoint(args.checkpoint)
    load_s = time.perf_counter() - start
    t2i = TextToImage(checkpoint, SamplerSettings(args.steps, args.cfg, args.sampler, args.scheduler))
    seeds = random.Random(args.seed + 1)
    prompts = singles + doubles
    prompt_seeds = [seeds.randrange(2**32) for _ in prompts]
    start = time.perf_counter()
    for i in range(0, len(prompts), args.batch):
        batch = prompts[i : i + args.batch]
        judge(t2i(batch, prompt_seeds[i : i + args.batch]), batch, scores)
    batched_s = (time.perf_counter() - start) / max(len(prompts), 1)
    single_times = []
    for seed in range(3):
        start = time.perf_counter()
        first = t2i([singles[0]], [seed])
        single_times.append(time.perf_counter() - start)
    same = bool(np.array_equal(first, t2i([singles[0]], [2])))
    placements = _placements(t2i, seeds=[seeds.randrange(2**32) for _ in range(10)])
    return {
        "checkpoint": args.checkpoint,
        "settings": vars(t2i.settings),
        "import_s": round(import_s, 3),
        "load_s": round(load_s, 3),
        "seconds_per_image_alone": round(min(single_times), 3),
        "seconds_per_image_batched": round(batched_s, 4),
        "deterministic": same,
        "distinct_placements_per_seed": placements,
    }


def _placements(t2i: object, seeds: list[int]) -> float:
    """Mean number of distinct detected positions when one seed is used with all five position words."""
    from .generate import TextToImage

    assert isinstance(t2i, TextToImage)
    counts = []
    for seed in seeds:
        prompts = [prompt_of([Obj("circle", "red", "small", p)]) for p in POSITIONS]
        images = t2i(prompts, [seed] * len(prompts))
        found = {d[0].obj.position for d in (detect(im, 1) for im in images) if d}
        counts.append(len(found))
    return float(np.mean(counts))


if __name__ == "__main__":
    main()
