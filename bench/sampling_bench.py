"""KSampler + VAEDecode, Loom against ComfyUI 0.3.64, same checkpoint and settings, runs alternated.

Two long-lived worker processes (one per engine) load the checkpoint and encode both prompts once; each
timed run then samples (Euler, normal, CFG 7) from a new seed and decodes, as a seed change does in
either server. Loom runs its workflow through its executor (so its node and thread-policy overhead is
counted); ComfyUI calls its nodes directly (`common_ksampler`, `VAEDecode`), which favours it slightly.
Runs alternate between the engines within each thread count; each worker reports its RSS after its
runs ("memory after a run"). Beside wall time each run's process CPU time (user + system, all threads)
is printed: on a machine shared with other work it varies far less than wall time, so at one thread it
is the steadier comparison (at two threads it also counts OpenMP's spinning). The whole bench holds
`/tmp/comfy.lock` while ComfyUI's worker lives.

Run: `flock /tmp/comfy.lock python bench/sampling_bench.py [--ckpt FILE] [--size 256] [--steps 4]
[--runs 4] [--threads 1 2] [--save DIR]`. Default checkpoint: /tmp/benchmodels/comfy_sd15.safetensors
(bench/make_comfy_sd15.py writes it). `--save DIR` writes each engine's image of each thread count's
first run as .npy, to compare pixels before and after a change. Target (issue 16): Loom/ComfyUI ≤ 0.9
at 1 and at 2 threads, and Loom's RSS after the runs ≤ ComfyUI's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINT = Path("/tmp/benchmodels/comfy_sd15.safetensors")
PROMPTS = ("a red circle", "blurry")

# Each worker: set up, print "ready", then answer one JSON line per request {"seed", "threads", "save"}.
_LOOM = """
import json, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, {root!r})
import psutil, torch
from engine import folders, threads
from engine.executor import Executor
from engine.graph import validate_prompt
from nodes import builtin_registry
ckpt = Path({ckpt!r})
configured = folders.Folders.under(Path(tempfile.mkdtemp()))
configured.models["checkpoints"] = [ckpt.parent]
folders.configure(configured)
registry = builtin_registry()
executor = Executor(registry)

def prompt(seed):
    return {{
        "1": {{"class_type": "CheckpointLoaderSimple", "inputs": {{"ckpt_name": ckpt.name}}}},
        "2": {{"class_type": "EmptyLatentImage",
            "inputs": {{"width": {size}, "height": {size}, "batch_size": 1}}}},
        "3": {{"class_type": "CLIPTextEncode", "inputs": {{"text": {pos!r}, "clip": ["1", 1]}}}},
        "4": {{"class_type": "CLIPTextEncode", "inputs": {{"text": {neg!r}, "clip": ["1", 1]}}}},
        "5": {{"class_type": "KSampler", "inputs": {{"seed": seed, "steps": {steps}, "cfg": 7.0,
            "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["1", 0],
            "positive": ["3", 0], "negative": ["4", 0], "latent_image": ["2", 0]}}}},
        "6": {{"class_type": "VAEDecode", "inputs": {{"samples": ["5", 0], "vae": ["1", 2]}}}},
        "7": {{"class_type": "PreviewImage", "inputs": {{"images": ["6", 0]}}}},
    }}

def run(seed, save=None):
    checked = validate_prompt(registry, prompt(seed))
    start, cpu = time.perf_counter(), time.process_time()
    result = executor.execute(checked.prompt, "bench", checked.outputs)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    assert result.status == "success", result.error
    if save:
        import numpy as np
        np.save(save, _last_image[0])
    return seconds, cpu

_last_image = [None]
from nodes.latent import vae as vae_nodes
_decode = vae_nodes.VAEDecode.run
def _keep(self, *args, **kwargs):
    out = _decode(self, *args, **kwargs)
    _last_image[0] = (out[0] if isinstance(out, tuple) else out).numpy()
    return out
vae_nodes.VAEDecode.run = _keep
threads.configure(1)
run(0)  # loads the checkpoint, encodes both prompts
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    threads.configure(request["threads"])
    seconds, cpu = run(request["seed"], request.get("save"))
    rss = psutil.Process().memory_info().rss / 2**20
    print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss}}), flush=True)
"""

_COMFY = """
import json, sys, time
sys.path.insert(0, {comfy!r})
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import psutil, torch
import comfy.sd, nodes
model, clip, vae, _ = comfy.sd.load_checkpoint_guess_config({ckpt!r}, output_vae=True, output_clip=True,
    embedding_directory=None)
assert type(model.model.model_config).__name__ == "SD15", model.model.model_config
with torch.inference_mode():
    positive = nodes.CLIPTextEncode().encode(clip, {pos!r})[0]
    negative = nodes.CLIPTextEncode().encode(clip, {neg!r})[0]
latent = nodes.EmptyLatentImage().generate({size}, {size}, 1)[0]

@torch.inference_mode()  # as ComfyUI's executor runs every node
def run(seed):
    start, cpu = time.perf_counter(), time.process_time()
    samples = nodes.common_ksampler(
        model, seed, {steps}, 7.0, "euler", "normal", positive, negative, latent)[0]
    image = nodes.VAEDecode().decode(vae, samples)[0]
    return time.perf_counter() - start, time.process_time() - cpu, image

torch.set_num_threads(1)
run(0)
print("ready", flush=True)
for line in sys.stdin:
    request = json.loads(line)
    torch.set_num_threads(request["threads"])
    seconds, cpu, image = run(request["seed"])
    if request.get("save"):
        import numpy as np
        np.save(request["save"], image.numpy())
    rss = psutil.Process().memory_info().rss / 2**20
    print(json.dumps({{"seconds": seconds, "cpu_seconds": cpu, "rss_mb": rss}}), flush=True)
"""


class Worker:
    """One engine's long-lived process, driven one request at a time over stdin/stdout."""

    def __init__(self, python: str, code: str, cwd: Path, max_threads: int) -> None:
        env = dict(os.environ, OMP_NUM_THREADS=str(max_threads), HF_HUB_OFFLINE="1")
        # Progress bars and warnings; shown if the worker fails. Closed with the worker.
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.process = subprocess.Popen(
            [python, "-c", code],
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        self._expect("ready")

    def _expect(self, word: str) -> str:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(word) or line.startswith("{"):
                return line
        self.log.seek(0)
        raise SystemExit(f"worker exited with {self.process.wait()}:\n{self.log.read()[-3000:]}")

    def run(self, seed: int, threads: int, save: str | None) -> dict[str, float]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"seed": seed, "threads": threads, "save": save}) + "\n")
        self.process.stdin.flush()
        answer: dict[str, float] = json.loads(self._expect("{"))
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)
        self.log.close()


def _load() -> str:
    busy = os.getloadavg()[0]
    return f"load average {busy:.1f} on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, default=CHECKPOINT)
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--save", type=Path, default=None, help="folder for each engine's seed-1 image")
    parser.add_argument("--only", choices=("Loom", "ComfyUI"), default=None, help="run one engine")
    args = parser.parse_args()
    if not args.ckpt.is_file():
        raise SystemExit(f"{args.ckpt} is missing: write it with bench/make_comfy_sd15.py")
    fill: dict[str, Any] = dict(
        ckpt=str(args.ckpt), size=args.size, steps=args.steps, pos=PROMPTS[0], neg=PROMPTS[1]
    )
    engines = {
        "Loom": (sys.executable, _LOOM.format(root=str(ROOT), **fill), ROOT),
        "ComfyUI": (
            str(args.comfy / "venv" / "bin" / "python"),
            _COMFY.format(comfy=str(args.comfy / "ComfyUI"), **fill),
            args.comfy / "ComfyUI",
        ),
    }
    if args.only:
        engines = {args.only: engines[args.only]}
    print(f"starting workers ({_load()})", flush=True)
    workers = {name: Worker(*spec, max(args.threads)) for name, spec in engines.items()}
    times: dict[tuple[str, int], list[float]] = {}
    cpu: dict[tuple[str, int], list[float]] = {}
    rss: dict[str, float] = {}
    seed = 1
    try:
        for count in args.threads:
            for repeat in range(args.runs):
                order = list(workers.items())
                for name, worker in order if repeat % 2 == 0 else order[::-1]:
                    save = None
                    if args.save and repeat == 0:  # same seed for both engines within a repeat
                        args.save.mkdir(parents=True, exist_ok=True)
                        save = str(args.save / f"{name.lower()}_{count}t_seed{seed}.npy")
                    answer = worker.run(seed, count, save)
                    times.setdefault((name, count), []).append(answer["seconds"])
                    cpu.setdefault((name, count), []).append(answer["cpu_seconds"])
                    rss[name] = answer["rss_mb"]
                    print(
                        f"{count} thread(s) run {repeat + 1} {name:8s} {answer['seconds']:6.2f} s "
                        f"(CPU {answer['cpu_seconds']:6.2f} s)",
                        flush=True,
                    )
                seed += 1
    finally:
        for worker in workers.values():
            worker.close()

    print(f"\n{args.ckpt.name}, {args.size}², {args.steps} steps, {args.runs} runs per cell, {_load()}")
    print(f"{'':8s} {'threads':>7s} {'min s':>7s} {'median s':>9s} {'CPU min s':>10s} {'CPU median s':>13s}")
    for (name, count), values in times.items():
        spent = cpu[(name, count)]
        print(
            f"{name:8s} {count:7d} {min(values):7.2f} {statistics.median(values):9.2f} "
            f"{min(spent):10.2f} {statistics.median(spent):13.2f}"
        )
    for name, value in rss.items():
        print(f"{name:8s} RSS after the runs {value:7.0f} MB")
    if len(workers) == 2:
        for count in args.threads:
            loom, comfy = times[("Loom", count)], times[("ComfyUI", count)]
            loom_cpu, comfy_cpu = cpu[("Loom", count)], cpu[("ComfyUI", count)]
            print(
                f"Loom/ComfyUI at {count} thread(s): min {min(loom) / min(comfy):.2f}, "
                f"median {statistics.median(loom) / statistics.median(comfy):.2f}; CPU time: "
                f"min {min(loom_cpu) / min(comfy_cpu):.2f}, "
                f"median {statistics.median(loom_cpu) / statistics.median(comfy_cpu):.2f}"
            )
        print(f"Loom/ComfyUI RSS after the runs: {rss['Loom'] / rss['ComfyUI']:.2f}")


if __name__ == "__main__":
    main()
