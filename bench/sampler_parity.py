"""Same workflow, same checkpoint, same seed on ComfyUI and on Loom: PSNR of the two images per sampler.

Both servers must already run and see the same checkpoint (ComfyUI detects SD1.5 only with full-size
CLIP-L and VAE: write one with `bench/make_comfy_sd15.py`, and give both servers the folder with
`--extra-model-paths-config`). For every sampler both servers offer × each scheduler it runs KSampler at
64×64, then the custom-sampling path (SamplerCustomAdvanced + BasicScheduler + CFGGuider + RandomNoise +
KSamplerSelect) against KSampler on the other server, when both servers have those nodes. Target: PSNR ≥
30 dB for every pair.

    python bench/sampler_parity.py --comfy 8317 --loom 8217 --ckpt comfy_sd15_bench.safetensors

`--custom-all` adds Loom's SamplerCustomAdvanced path against ComfyUI's KSampler for every sampler and
scheduler (ComfyUI caches the KSampler images, so these cost only Loom's runs), except for the samplers
whose KSampler drops the penultimate sigma (dpm_2, dpm_2_ancestral, uni_pc, uni_pc_bh2): there the
two paths differ in ComfyUI too, and ComfyUI's SamplerCustomAdvanced is the reference.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from comfy_client import get, psnr, queue_prompt, saved_image  # bench/comfy_client.py, beside this script

CUSTOM_NODES = ("SamplerCustomAdvanced", "BasicScheduler", "CFGGuider", "RandomNoise", "KSamplerSelect")


def _common(ckpt: str, seed: int, prefix: str) -> dict[str, Any]:
    return {
        "ckpt": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "latent": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
        "pos": {"class_type": "CLIPTextEncode", "inputs": {"text": "a red circle", "clip": ["ckpt", 1]}},
        "neg": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["ckpt", 1]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["sample", 0], "vae": ["ckpt", 2]}},
        "save": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": f"{prefix}_s{seed}", "images": ["decode", 0]},
        },
    }


def ksampler_prompt(ckpt: str, sampler: str, scheduler: str, steps: int, seed: int) -> dict[str, Any]:
    prompt = _common(ckpt, seed, f"ks_{sampler}_{scheduler}")
    prompt["sample"] = {
        "class_type": "KSampler",
        "inputs": {
            "seed": seed,
            "steps": steps,
            "cfg": 5.0,
            "sampler_name": sampler,
            "scheduler": scheduler,
            "denoise": 1.0,
            "model": ["ckpt", 0],
            "positive": ["pos", 0],
            "negative": ["neg", 0],
            "latent_image": ["latent", 0],
        },
    }
    return prompt


def custom_prompt(
    ckpt: str,
    sampler: str,
    scheduler: str,
    steps: int,
    seed: int,
    sampler_node: tuple[str, dict[str, Any]] | None = None,
    sigmas_node: tuple[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """SamplerCustomAdvanced + CFGGuider + RandomNoise; by default KSamplerSelect + BasicScheduler,
    or the given sampler and sigmas nodes (class name, literal inputs)."""
    tag = sampler_node[0] if sampler_node else sampler
    prompt = _common(ckpt, seed, f"sca_{tag}_{sigmas_node[0] if sigmas_node else scheduler}")
    select = sampler_node or ("KSamplerSelect", {"sampler_name": sampler})
    sigmas = sigmas_node or ("BasicScheduler", {"scheduler": scheduler, "steps": steps, "denoise": 1.0})
    sigma_inputs = dict(sigmas[1])
    if sigmas[0] in MODEL_SCHEDULERS:
        sigma_inputs["model"] = ["ckpt", 0]
    prompt |= {
        "noise": {"class_type": "RandomNoise", "inputs": {"noise_seed": seed}},
        "guider": {
            "class_type": "CFGGuider",
            "inputs": {"model": ["ckpt", 0], "positive": ["pos", 0], "negative": ["neg", 0], "cfg": 5.0},
        },
        "select": {"class_type": select[0], "inputs": select[1]},
        "sigmas": {"class_type": sigmas[0], "inputs": sigma_inputs},
        "sample": {
            "class_type": "SamplerCustomAdvanced",
            "inputs": {
                "noise": ["noise", 0],
                "guider": ["guider", 0],
                "sampler": ["select", 0],
                "sigmas": ["sigmas", 0],
                "latent_image": ["latent", 0],
            },
        },
    }
    return prompt


def split_prompt(ckpt: str, steps: int, seed: int) -> dict[str, Any]:
    """Noise added by AddNoise over the high part of a split schedule (the first two steps), then
    the low part sampled with DisableNoise (whose seed 0 seeds the ancestral noise)."""
    prompt = custom_prompt(ckpt, "euler_ancestral", "karras", steps, seed)
    prompt["split"] = {"class_type": "SplitSigmas", "inputs": {"sigmas": ["sigmas", 0], "step": 2}}
    prompt["noised"] = {
        "class_type": "AddNoise",
        "inputs": {
            "model": ["ckpt", 0],
            "noise": ["noise", 0],
            "sigmas": ["split", 0],
            "latent_image": ["latent", 0],
        },
    }
    prompt["off"] = {"class_type": "DisableNoise", "inputs": {}}
    prompt["sample"]["inputs"] |= {"noise": ["off", 0], "sigmas": ["split", 1], "latent_image": ["noised", 0]}
    prompt["save"]["inputs"]["filename_prefix"] = f"split_s{seed}"
    return prompt


# KSampler gives these one more step and drops the penultimate sigma (ComfyUI's
# DISCARD_PENULTIMATE_SIGMA_SAMPLERS); SamplerCustomAdvanced + BasicScheduler does not.
DISCARD_PENULTIMATE = ("dpm_2", "dpm_2_ancestral", "uni_pc", "uni_pc_bh2")
MODEL_SCHEDULERS = ("BasicScheduler", "SDTurboScheduler", "BetaSamplingScheduler")
SD = {"sigma_max": 14.614642, "sigma_min": 0.0291675}
# Sampler and scheduler nodes run the same on both servers through SamplerCustomAdvanced.
CUSTOM_CASES: list[tuple[tuple[str, dict[str, Any]], tuple[str, dict[str, Any]]]] = [
    (
        ("SamplerEulerAncestral", {"eta": 0.5, "s_noise": 1.0}),
        ("AlignYourStepsScheduler", {"model_type": "SD1", "steps": 6, "denoise": 1.0}),
    ),
    (
        ("SamplerDPMPP_2M_SDE", {"solver_type": "heun", "eta": 1.0, "s_noise": 1.0, "noise_device": "cpu"}),
        ("KarrasScheduler", {"steps": 6, "rho": 7.0, **SD}),
    ),
    (
        ("SamplerDPMPP_SDE", {"eta": 1.0, "s_noise": 1.0, "r": 0.5, "noise_device": "cpu"}),
        ("ExponentialScheduler", {"steps": 6, **SD}),
    ),
    (
        ("SamplerDPMPP_3M_SDE", {"eta": 1.0, "s_noise": 1.0, "noise_device": "gpu"}),
        ("PolyexponentialScheduler", {"steps": 6, "rho": 1.5, **SD}),
    ),
    (
        ("SamplerDPMPP_2S_Ancestral", {"eta": 1.0, "s_noise": 1.0}),
        ("BetaSamplingScheduler", {"steps": 6, "alpha": 0.6, "beta": 0.6}),
    ),
    (
        ("SamplerER_SDE", {"solver_type": "Reverse-time SDE", "max_stage": 3, "eta": 0.5, "s_noise": 1.0}),
        ("BasicScheduler", {"scheduler": "karras", "steps": 6, "denoise": 1.0}),
    ),
    # nearest-exact isolates the sampler: Loom's bislerp and bicubic resizing differ from ComfyUI's
    # (LCMUpscale with bislerp measured 34.8 dB).
    (
        ("SamplerLCMUpscale", {"scale_ratio": 1.5, "scale_steps": -1, "upscale_method": "nearest-exact"}),
        ("BasicScheduler", {"scheduler": "sgm_uniform", "steps": 4, "denoise": 1.0}),
    ),
    (
        ("SamplerLMS", {"order": 3}),
        ("VPScheduler", {"steps": 6, "beta_d": 19.9, "beta_min": 0.1, "eps_s": 0.001}),
    ),
    (
        (
            "SamplerDPMAdaptative",
            {
                "order": 3,
                "rtol": 0.05,
                "atol": 0.0078,
                "h_init": 0.05,
                "pcoeff": 0.0,
                "icoeff": 1.0,
                "dcoeff": 0.0,
                "accept_safety": 0.81,
                "eta": 0.0,
                "s_noise": 1.0,
            },
        ),
        ("SDTurboScheduler", {"steps": 4, "denoise": 1.0}),
    ),
]


def _sampler_names(port: int) -> list[str]:
    info = json.loads(get(port, "/object_info/KSampler"))["KSampler"]
    return list(info["input"]["required"]["sampler_name"][0])


def _has_nodes(port: int) -> bool:
    names = set(json.loads(get(port, "/object_info")))
    return all(node in names for node in CUSTOM_NODES)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--comfy", type=int, default=8317, help="ComfyUI's port")
    parser.add_argument("--loom", type=int, default=8217, help="Loom's port")
    parser.add_argument("--ckpt", default="comfy_sd15_bench.safetensors")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--schedulers", default="normal,karras")
    parser.add_argument("--samplers", default="", help="comma-separated subset (default: all shared)")
    parser.add_argument("--timeout", type=float, default=900.0)
    parser.add_argument("--only-custom", action="store_true", help="skip the KSampler pairs")
    parser.add_argument(
        "--custom-all",
        action="store_true",
        help="also Loom's SamplerCustomAdvanced against ComfyUI's KSampler for every shared sampler "
        "and scheduler",
    )
    args = parser.parse_args()

    comfy_names, loom_names = _sampler_names(args.comfy), _sampler_names(args.loom)
    shared = [name for name in comfy_names if name in loom_names]
    if args.samplers:
        shared = [name for name in shared if name in args.samplers.split(",")]
    schedulers = args.schedulers.split(",")
    jobs: list[tuple[str, int, dict[str, Any], int, dict[str, Any]]] = []
    for scheduler in () if args.only_custom else schedulers:
        for sampler in shared:
            prompt = ksampler_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            jobs.append((f"KSampler {sampler} / {scheduler}", args.comfy, prompt, args.loom, prompt))
    comfy_custom, loom_custom = _has_nodes(args.comfy), _has_nodes(args.loom)
    for sampler in ("euler", "euler_ancestral", "dpmpp_2m_sde") if comfy_custom else ():
        scheduler = schedulers[0]
        label = f"{sampler} / {scheduler}"
        ks = ksampler_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
        sca = custom_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
        jobs.append(
            (f"ComfyUI SamplerCustomAdvanced vs Loom KSampler {label}", args.comfy, sca, args.loom, ks)
        )
        if loom_custom:
            jobs.append(
                (f"ComfyUI KSampler vs Loom SamplerCustomAdvanced {label}", args.comfy, ks, args.loom, sca)
            )
    for scheduler in schedulers if args.custom_all and loom_custom else ():
        for sampler in shared:
            ks = ksampler_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            sca = custom_prompt(args.ckpt, sampler, scheduler, args.steps, args.seed)
            if sampler in DISCARD_PENULTIMATE and comfy_custom:
                # KSampler drops these samplers' penultimate sigma, BasicScheduler does not: the two
                # paths differ in ComfyUI itself, so compare its custom path with Loom's.
                label = f"ComfyUI SamplerCustomAdvanced vs Loom SamplerCustomAdvanced {sampler} / {scheduler}"
                jobs.append((label, args.comfy, sca, args.loom, sca))
            else:
                label = f"ComfyUI KSampler vs Loom SamplerCustomAdvanced {sampler} / {scheduler}"
                jobs.append((label, args.comfy, ks, args.loom, sca))
    if comfy_custom and loom_custom:
        for sampler_node, sigmas_node in CUSTOM_CASES:
            prompt = custom_prompt(args.ckpt, "", "", args.steps, args.seed, sampler_node, sigmas_node)
            label = f"SamplerCustomAdvanced {sampler_node[0]} + {sigmas_node[0]}"
            jobs.append((label, args.comfy, prompt, args.loom, prompt))
        prompt = split_prompt(args.ckpt, args.steps, args.seed)
        jobs.append(
            ("SplitSigmas + AddNoise + DisableNoise, euler_ancestral", args.comfy, prompt, args.loom, prompt)
        )
    if not loom_custom:
        print("Loom lacks one of", ", ".join(CUSTOM_NODES), "- its custom-sampling pairs are skipped")

    # Queue everything on both servers first, so that the two run side by side.
    queued = [(label, cp, queue_prompt(cp, cq), lp, queue_prompt(lp, lq)) for label, cp, cq, lp, lq in jobs]
    results: list[tuple[str, float | str]] = []
    for label, comfy_port, comfy_id, loom_port, loom_id in queued:
        a, b = saved_image(comfy_port, comfy_id, args.timeout), saved_image(loom_port, loom_id, args.timeout)
        value: float | str
        if isinstance(a, str) or isinstance(b, str):
            value = f"ComfyUI: {a if isinstance(a, str) else 'ok'}; Loom: {b if isinstance(b, str) else 'ok'}"
        else:
            value = psnr(a, b)
        results.append((label, value))
        shown = f"{value:7.2f} dB" if isinstance(value, float) else value
        print(f"{label:70s} {shown}", flush=True)

    numbers = [v for _, v in results if isinstance(v, float)]
    below = [label for label, v in results if isinstance(v, float) and v < 30]
    failed = [label for label, v in results if isinstance(v, str)]
    print(
        f"\n{len(numbers)} pairs compared, min PSNR {min(numbers):.2f} dB, "
        f"{len(below)} below 30 dB, {len(failed)} failed; samplers only in ComfyUI: "
        f"{', '.join(n for n in comfy_names if n not in loom_names) or 'none'}"
    )
    return 1 if below or failed else 0


if __name__ == "__main__":
    sys.exit(main())
