"""ComfyUI's k-diffusion sampler functions against Loom's on a toy guided denoiser: same sigmas, same
start, the same per-step noise fed to both, for every KSampler sampler both have (ddim, uni_pc and the
dpm_fast/dpm_adaptive wrappers excepted: their ComfyUI entry points are not k-diffusion functions),
for an eps model and a rectified-flow one. Isolates the sampler math from models, noise streams and
servers; the image-level check is bench/sampler_parity.py.

The toy denoiser runs the post-cfg functions of model_options as a guider does, so the CFG++ samplers
see a distinct uncond prediction. Needs the CPU ComfyUI (source /tmp/comfy/ComfyUI, venv /tmp/comfy/venv);
this script runs ComfyUI's side in that venv (small and quick: no lock needed beyond a few seconds of CPU).

    python bench/sampler_function_parity.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"dpm_fast", "dpm_adaptive"}


def toy_model(x: Tensor, sigma: Tensor, model_options: dict[str, Any] | None = None, **_: Any) -> Tensor:
    """cfg 4 over two Gaussian-data denoisers (cond slightly nonlinear), post-cfg functions applied."""
    s = sigma.reshape(-1, 1, 1, 1)
    cond = 0.3 + 0.25 / (0.25 + s**2) * (x - 0.3) + 0.05 * torch.tanh(x)
    uncond = -0.2 + 0.36 / (0.36 + s**2) * (x + 0.2)
    denoised = uncond + (cond - uncond) * 4.0
    for fn in (model_options or {}).get("sampler_post_cfg_function", []):
        args = {
            "denoised": denoised,
            "cond_denoised": cond,
            "uncond_denoised": uncond,
            "sigma": sigma,
            "input": x,
        }
        denoised = fn(args)
    return denoised


def case(flow: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(sigmas, start, 60 noise draws) of the eps or the flow case."""
    generator = torch.Generator().manual_seed(0)
    if flow:
        sigmas = torch.tensor([1.0, 0.9, 0.75, 0.55, 0.35, 0.18, 0.06, 0.0])
    else:
        sigmas = torch.tensor([14.6, 8.0, 4.5, 2.4, 1.2, 0.55, 0.2, 0.0])
    x = torch.randn(1, 4, 8, 8, generator=generator) * float(sigmas[0])
    return sigmas, x, torch.randn(60, 1, 4, 8, 8, generator=generator)


COMFY_SIDE = r'''
import inspect, sys, torch
sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[2])
import comfy.cli_args
comfy.cli_args.args.cpu = True
import comfy.k_diffusion.sampling as ks
import comfy.model_sampling as cms
import comfy.samplers
from sampler_function_parity import case, toy_model

class Eps(cms.ModelSamplingDiscrete, cms.EPS): pass
class Flow(cms.ModelSamplingDiscreteFlow, cms.CONST): pass

class Wrapped:
    """What ComfyUI's samplers receive: a callable whose inner_model.model_patcher holds the sampling."""
    def __init__(self, ms):
        patcher = type("P", (), {"get_model_object": lambda self, name: ms})()
        base = type("B", (), {"model_sampling": ms})()
        self.inner_model = type("I", (), {"model_patcher": patcher, "inner_model": base})()
    def __call__(self, *args, **kwargs):
        return toy_model(*args, **kwargs)

out = {}
for flow in (False, True):
    sigmas, x, noise = case(flow)
    for name in comfy.samplers.KSAMPLER_NAMES:
        fn = getattr(ks, "sample_" + name, None)
        if fn is None or name in ("dpm_fast", "dpm_adaptive"):
            continue
        draws = iter(noise)
        kwargs = {}
        if "noise_sampler" in inspect.signature(fn).parameters:
            kwargs["noise_sampler"] = lambda s, t, d=draws: next(d)
        model = Wrapped(Flow() if flow else Eps())
        key = f"{name}/{'flow' if flow else 'eps'}"
        out[key] = fn(model, x.clone(), sigmas, extra_args={"model_options": {}}, disable=True, **kwargs)
torch.save(out, sys.argv[3])
'''


def comfy_results(comfy_root: str, comfy_python: str) -> dict[str, Tensor]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "comfy.pt")
        env = dict(os.environ, OMP_NUM_THREADS="1")
        bench = str(Path(__file__).resolve().parent)
        subprocess.run([comfy_python, "-c", COMFY_SIDE, comfy_root, bench, path], check=True, env=env)
        return torch.load(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy-root", default="/tmp/comfy/ComfyUI")
    parser.add_argument("--comfy-python", default="/tmp/comfy/venv/bin/python")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.sampling.model_sampling import ModelSampling
    from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow
    from engine.sampling.registry import SAMPLER_NAMES, get_sampler

    reference = comfy_results(args.comfy_root, args.comfy_python)
    worst = 0.0
    for key, expected in reference.items():
        name, kind = key.split("/")
        if name not in SAMPLER_NAMES:
            print(f"{key:40s} only in ComfyUI")
            continue
        sigmas, x, noise = case(kind == "flow")
        draws = iter(noise)
        sampling = ModelSamplingDiscreteFlow() if kind == "flow" else ModelSampling()
        got = get_sampler(name, sampling)(
            toy_model,
            x.clone(),
            sigmas,
            extra_args={"model_options": {}},
            noise_sampler=lambda s, t, d=draws: next(d),
        )
        diff = float((got - expected).abs().max()) / max(float(expected.abs().max()), 1e-12)
        worst = max(worst, diff) if diff == diff else float("inf")
        print(f"{key:40s} max |Loom - ComfyUI| / max |ComfyUI| = {diff:.2e}")
    print(f"\n{len(reference)} cases, worst relative difference {worst:.2e}")
    return 0 if worst < 1e-4 else 1


if __name__ == "__main__":
    sys.exit(main())
