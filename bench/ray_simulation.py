"""Does the queue and its routing hold up at 8 and 64 GPUs? A discrete-event simulation, pure Python,
that calls Loom's real routing (`engine.scaleout.routing.plan`, and `RoundRobin` as the baseline)
exactly as the dispatcher does: on every arrival and every finished prompt, with the first 2×GPUs
pending prompts and every worker's state.

The model (defaults; every one is a flag):
- a catalogue of 24 SDXL-size checkpoints, each prompt's drawn from a Zipf(1.1) popularity;
- loading one onto a GPU takes 6 s (a 6.5 GB file from local NVMe, moved and set up on the GPU);
- sampling a prompt takes a log-normal time, median 5 s (1024², 30 steps on an A100-class GPU);
- each GPU keeps its 2 most recently used checkpoints (an 80 GB GPU keeps more, a 24 GB one fewer);
- prompts arrive as a Poisson stream at 50, 70 and 85 % of what the GPUs could sample if they never
  loaded (the time spent loading comes on top: at 85 % no policy keeps up for long).

Printed per cluster size and policy: model loads per 100 prompts, queue wait (mean, p95, p99), the
time GPUs spend loading, throughput, the longest queue, and the real time one routing decision took.
Run: `python bench/ray_simulation.py [--prompts-per-gpu 150]`.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import statistics
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.scaleout.routing import PendingPrompt, RoundRobin, WorkerView, plan


@dataclass
class Params:
    gpus: int
    prompts: int
    models: int = 24
    zipf: float = 1.1
    load_s: float = 6.0
    sample_median_s: float = 5.0
    sample_sigma: float = 0.35
    kept: int = 2
    utilisation: float = 0.85
    seed: int = 1


@dataclass
class Gpu:
    name: str
    held: OrderedDict[str, None] = field(default_factory=OrderedDict)
    busy: bool = False
    runs: int = 0
    loading_s: float = 0.0


@dataclass
class Outcome:
    loads: int = 0
    waits: list[float] = field(default_factory=list)
    loading_s: float = 0.0
    finished_at: float = 0.0
    longest_queue: int = 0
    decision_s: list[float] = field(default_factory=list)


def simulate(params: Params, policy: str) -> Outcome:
    rng = random.Random(params.seed)
    weights = [1 / (k + 1) ** params.zipf for k in range(params.models)]
    names = [f"ckpt_{k:02d}.safetensors" for k in range(params.models)]
    mean_sample = params.sample_median_s * math.exp(params.sample_sigma**2 / 2)
    rate = params.utilisation * params.gpus / mean_sample
    gpus = {f"gpu{i}": Gpu(f"gpu{i}") for i in range(params.gpus)}
    arrivals: dict[str, float] = {}
    models: dict[str, str] = {}
    pending: list[str] = []
    skips: dict[str, int] = {}
    events: list[tuple[float, int, str, str]] = []
    clock = 0.0
    for n in range(params.prompts):
        clock += rng.expovariate(rate)
        prompt_id = f"p{n}"
        models[prompt_id] = rng.choices(names, weights)[0]
        heapq.heappush(events, (clock, n, "arrive", prompt_id))
    round_robin = RoundRobin()
    out = Outcome()
    order = params.prompts
    while events:
        now, _, kind, subject = heapq.heappop(events)
        if kind == "arrive":
            arrivals[subject] = now
            pending.append(subject)
        else:
            gpus[subject].busy = False
            out.finished_at = now
        out.longest_queue = max(out.longest_queue, len(pending))
        window = pending[: 2 * params.gpus]
        waiting = [PendingPrompt(p, frozenset({models[p]}), skipped=skips.get(p, 0)) for p in window]
        views = [
            WorkerView(g.name, busy=g.busy, models=frozenset(g.held), prompts_run=g.runs)
            for g in gpus.values()
        ]
        started = time.perf_counter()
        chosen = round_robin.plan(waiting, views) if policy == "round-robin" else plan(waiting, views)
        out.decision_s.append(time.perf_counter() - started)
        picked = {p for p, _ in chosen}
        if chosen:
            last = max(i for i, p in enumerate(window) if p in picked)
            for p in window[:last]:
                if p not in picked:
                    skips[p] = skips.get(p, 0) + 1
        for prompt_id, name in chosen:
            pending.remove(prompt_id)
            gpu, model = gpus[name], models[prompt_id]
            service = rng.lognormvariate(math.log(params.sample_median_s), params.sample_sigma)
            if model in gpu.held:
                gpu.held.move_to_end(model)
            else:
                out.loads += 1
                out.loading_s += params.load_s
                service += params.load_s
                gpu.held[model] = None
                while len(gpu.held) > params.kept:
                    gpu.held.popitem(last=False)
            gpu.busy, gpu.runs = True, gpu.runs + 1
            out.waits.append(now - arrivals[prompt_id])
            order += 1
            heapq.heappush(events, (now + service, order, "done", name))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts-per-gpu", type=int, default=60)
    parser.add_argument("--models", type=int, default=24)
    parser.add_argument("--load-s", type=float, default=6.0)
    parser.add_argument("--sample-s", type=float, default=5.0, help="median sampling time")
    parser.add_argument("--kept", type=int, default=2, help="checkpoints a GPU keeps loaded")
    parser.add_argument("--utilisation", type=float, nargs="+", default=[0.5, 0.7, 0.85])
    args = parser.parse_args()
    header = (
        f"{'load':>4} {'GPUs':>4} {'policy':<12} {'prompts':>7} {'loads/100':>9} {'wait mean':>9}"
        f" {'p95':>7} {'p99':>7}"
        f" {'loading':>7} {'prompts/s':>9} {'max queue':>9} {'decision':>9}"
    )
    print(header)
    summary = []
    for utilisation, gpus in [(u, g) for u in args.utilisation for g in (8, 64)]:
        row = {}
        for policy in ("affinity", "round-robin"):
            params = Params(
                gpus,
                args.prompts_per_gpu * gpus,
                models=args.models,
                load_s=args.load_s,
                sample_median_s=args.sample_s,
                kept=args.kept,
                utilisation=utilisation,
            )
            out = simulate(params, policy)
            busy = out.finished_at * gpus
            row[policy] = out
            print(
                f"{utilisation:>4.2f} {gpus:>4} {policy:<12} {params.prompts:>7}"
                f" {100 * out.loads / params.prompts:>9.1f}"
                f" {statistics.mean(out.waits):>8.1f}s {percentile(out.waits, 0.95):>6.1f}s"
                f" {percentile(out.waits, 0.99):>6.1f}s {100 * out.loading_s / busy:>6.1f}%"
                f" {params.prompts / out.finished_at:>9.2f} {out.longest_queue:>9}"
                f" {1e6 * statistics.mean(out.decision_s):>7.0f}µs"
            )
        affinity, rr = row["affinity"], row["round-robin"]
        summary.append(
            f"{gpus} GPUs at {utilisation:.0%}: {rr.loads / max(affinity.loads, 1):.1f}x fewer loads,"
            " mean wait"
            f" {statistics.mean(affinity.waits):.1f} s vs {statistics.mean(rr.waits):.1f} s"
        )
    print("summary (affinity vs round-robin): " + "; ".join(summary))


if __name__ == "__main__":
    main()
