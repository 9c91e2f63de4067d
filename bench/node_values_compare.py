"""Run Loom's core nodes and ComfyUI's on the same small random inputs and compare the outputs.

Loom's nodes run here; ComfyUI's run in its own venv (a child process, since both projects have a
top-level `nodes` module), on the same inputs passed through a torch file. Prints one line per case
with the largest absolute difference, then a summary.

    python bench/node_values_compare.py [--comfy /tmp/comfy]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from nodes import builtin_registry  # noqa: E402

# Runs inside ComfyUI's venv: finds each node class by id (V1 mappings and V3 schemas) and calls it.
COMFY_SIDE = r"""
import importlib, sys, torch
cases_file, out_file = sys.argv[1], sys.argv[2]
sys.argv = [sys.argv[0], "--cpu"]
sys.path.insert(0, ".")
import comfy.options
comfy.options.enable_args_parsing()
import utils.install_util  # before `nodes`, which puts comfy/ (and its utils.py) on sys.path, as main.py does
import nodes
classes = dict(nodes.NODE_CLASS_MAPPINGS)
for name in ("nodes_mask", "nodes_images", "nodes_latent", "nodes_post_processing", "nodes_morphology",
             "nodes_canny", "nodes_string", "nodes_ip2p", "nodes_clip_sdxl", "nodes_preview_any"):
    module = importlib.import_module("comfy_extras." + name)
    classes.update(getattr(module, "NODE_CLASS_MAPPINGS", {}))
    for value in vars(module).values():
        v3 = isinstance(value, type) and hasattr(value, "define_schema")
        if v3 and value.__module__ == module.__name__:
            classes[value.define_schema().node_id] = value
cases = torch.load(cases_file, weights_only=False)
results = []
for node, inputs in cases:
    cls = classes[node]
    try:
        if hasattr(cls, "FUNCTION"):
            out = tuple(getattr(cls(), cls.FUNCTION)(**inputs))
        else:
            out = tuple(cls.execute(**inputs).args)
        results.append(("ok", out))
    except Exception as exc:
        results.append(("error", f"{type(exc).__name__}: {exc}"))
torch.save(results, out_file)
"""


def image(
    batch: int = 2, height: int = 17, width: int = 23, channels: int = 3, seed: int = 0
) -> torch.Tensor:
    return torch.rand(batch, height, width, channels, generator=torch.Generator().manual_seed(seed))


def latent(batch: int = 1, height: int = 12, width: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    return {"samples": torch.randn(batch, 4, height, width, generator=torch.Generator().manual_seed(seed))}


def mask(height: int = 17, width: int = 23, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, height, width, generator=torch.Generator().manual_seed(seed))


def cases() -> list[tuple[str, dict[str, Any]]]:
    smooth = torch.nn.functional.interpolate(image(1, 6, 6).movedim(-1, 1), size=(32, 40), mode="bilinear")
    smooth = smooth.movedim(1, -1)
    binary = (mask(20, 20) > 0.7).float()
    cond = [[torch.randn(1, 77, 8), {"pooled_output": torch.randn(1, 4)}]]
    other = [[torch.randn(1, 154, 8), {"pooled_output": torch.randn(1, 4)}]]
    out: list[tuple[str, dict[str, Any]]] = []
    for method, factor in (
        ("bilinear", 0.5),
        ("bicubic", 1.7),
        ("area", 0.3),
        ("lanczos", 0.8),
        ("nearest-exact", 2),
    ):
        out.append(("ImageScaleBy", {"image": image(), "upscale_method": method, "scale_by": factor}))
    out.append(
        ("ImageScaleToTotalPixels", {"image": image(), "upscale_method": "bilinear", "megapixels": 0.01})
    )
    out.append(("ImageCrop", {"image": image(), "width": 9, "height": 30, "x": 20, "y": 3}))
    out.append(
        (
            "ImagePadForOutpaint",
            {"image": image(1, 20, 24), "left": 8, "top": 0, "right": 16, "bottom": 8, "feathering": 5},
        )
    )
    out.append(
        (
            "ImageCompositeMasked",
            {
                "destination": image(),
                "source": image(1, 9, 7, seed=3),
                "x": 5,
                "y": 11,
                "resize_source": False,
                "mask": mask(5, 5),
            },
        )
    )
    out.append(
        (
            "ImageCompositeMasked",
            {"destination": image(), "source": image(1, 9, 7, seed=3), "x": 0, "y": 0, "resize_source": True},
        )
    )
    out.append(
        (
            "ImageStitch",
            {
                "image1": image(),
                "direction": "right",
                "match_image_size": True,
                "spacing_width": 4,
                "spacing_color": "red",
                "image2": image(1, 8, 8, seed=2),
            },
        )
    )
    out.append(
        (
            "ImageStitch",
            {
                "image1": image(),
                "direction": "up",
                "match_image_size": False,
                "spacing_width": 2,
                "spacing_color": "white",
                "image2": image(3, 8, 30, seed=2),
            },
        )
    )
    for flip in ("x-axis: vertically", "y-axis: horizontally"):
        out.append(("ImageFlip", {"image": image(), "flip_method": flip}))
    for rotation in ("none", "90 degrees", "180 degrees", "270 degrees"):
        out.append(("ImageRotate", {"image": image(), "rotation": rotation}))
    out.append(("RepeatImageBatch", {"image": image(), "amount": 3}))
    out.append(("ImageFromBatch", {"image": image(4), "batch_index": 2, "length": 5}))
    out.append(("GetImageSize", {"image": image()}))
    for radius, sigma in ((1, 1.0), (4, 0.5), (7, 3.0)):
        out.append(("ImageBlur", {"image": image(), "blur_radius": radius, "sigma": sigma}))
        out.append(
            ("ImageSharpen", {"image": image(), "sharpen_radius": radius, "sigma": sigma, "alpha": 0.6})
        )
    for dither in ("none", "floyd-steinberg", "bayer-2", "bayer-8"):
        out.append(("ImageQuantize", {"image": image(), "colors": 5, "dither": dither}))
    for operation in ("erode", "dilate", "open", "close", "gradient", "bottom_hat", "top_hat"):
        for size in (3, 4, 7):
            out.append(("Morphology", {"image": image(), "operation": operation, "kernel_size": size}))
    for low, high in ((0.4, 0.8), (0.1, 0.3), (0.05, 0.9)):
        out.append(("Canny", {"image": image(seed=5), "low_threshold": low, "high_threshold": high}))
        out.append(("Canny", {"image": smooth, "low_threshold": low, "high_threshold": high}))
    out.append(("SolidMask", {"value": 0.3, "width": 7, "height": 5}))
    out.append(("InvertMask", {"mask": mask()}))
    out.append(("CropMask", {"mask": mask(), "x": 4, "y": 10, "width": 30, "height": 5}))
    for operation in ("multiply", "add", "subtract", "and", "or", "xor"):
        out.append(
            (
                "MaskComposite",
                {
                    "destination": mask(),
                    "source": mask(9, 30, seed=4),
                    "x": 3,
                    "y": 5,
                    "operation": operation,
                },
            )
        )
    out.append(("FeatherMask", {"mask": torch.ones(1, 12, 14), "left": 3, "top": 2, "right": 4, "bottom": 5}))
    for expand, tapered in ((2, True), (3, False), (-2, True), (-1, False)):
        out.append(("GrowMask", {"mask": binary, "expand": expand, "tapered_corners": tapered}))
    out.append(("ThresholdMask", {"mask": mask(), "value": 0.4}))
    for channel in ("red", "green", "blue"):
        out.append(("ImageToMask", {"image": image(), "channel": channel}))
    colors = (image() * 3).round() / 3
    out.append(("ImageColorToMask", {"image": colors, "color": 0x55AAFF}))
    out.append(
        (
            "LatentComposite",
            {
                "samples_to": latent(2),
                "samples_from": latent(1, 6, 7, seed=2),
                "x": 16,
                "y": 24,
                "feather": 16,
            },
        )
    )
    out.append(
        (
            "LatentComposite",
            {
                "samples_to": latent(2),
                "samples_from": latent(1, 16, 16, seed=2),
                "x": 8,
                "y": 0,
                "feather": 0,
            },
        )
    )
    out.append(
        (
            "LatentCompositeMasked",
            {
                "destination": latent(2),
                "source": latent(1, 6, 7, seed=2),
                "x": 40,
                "y": 8,
                "resize_source": False,
                "mask": mask(48, 56),
            },
        )
    )
    out.append(
        ("LatentBlend", {"samples1": latent(), "samples2": latent(1, 8, 8, seed=3), "blend_factor": 0.3})
    )
    out.append(("LatentCrop", {"samples": latent(), "width": 64, "height": 72, "x": 48, "y": 8}))
    for rotation in ("90 degrees", "270 degrees"):
        out.append(("LatentRotate", {"samples": latent(), "rotation": rotation}))
    out.append(("LatentFlip", {"samples": latent(), "flip_method": "y-axis: horizontally"}))
    out.append(
        (
            "LatentFromBatch",
            {"samples": {**latent(5), "noise_mask": mask(96, 80)}, "batch_index": 2, "length": 2},
        )
    )
    out.append(("RepeatLatentBatch", {"samples": {**latent(2), "batch_index": [3, 4]}, "amount": 3}))
    out.append(("LatentBatch", {"samples1": latent(2), "samples2": latent(1, 6, 5, seed=1)}))
    out.append(("LatentAdd", {"samples1": latent(2), "samples2": latent(1, 6, 5, seed=1)}))
    out.append(("LatentSubtract", {"samples1": latent(2), "samples2": latent(1, seed=1)}))
    out.append(("LatentMultiply", {"samples": latent(), "multiplier": -1.3}))
    out.append(("LatentInterpolate", {"samples1": latent(), "samples2": latent(seed=1), "ratio": 0.3}))
    for behavior in ("random", "fixed"):
        out.append(
            (
                "LatentBatchSeedBehavior",
                {"samples": {**latent(3), "batch_index": [4, 5, 6]}, "seed_behavior": behavior},
            )
        )
    out.append(
        (
            "ConditioningAverage",
            {"conditioning_to": cond, "conditioning_from": other, "conditioning_to_strength": 0.3},
        )
    )
    out.append(
        (
            "ConditioningAverage",
            {"conditioning_to": other, "conditioning_from": cond, "conditioning_to_strength": 0.6},
        )
    )
    out.append(("ConditioningConcat", {"conditioning_to": cond, "conditioning_from": other}))
    out.append(
        (
            "ConditioningSetMask",
            {"conditioning": cond, "mask": mask(), "strength": 0.5, "set_cond_area": "mask bounds"},
        )
    )
    out.append(
        (
            "ConditioningSetAreaPercentage",
            {"conditioning": cond, "width": 0.5, "height": 0.3, "x": 0.1, "y": 0.2, "strength": 1.5},
        )
    )
    out.append(("ConditioningSetAreaStrength", {"conditioning": cond, "strength": 2.0}))
    out.append(("ConditioningSetTimestepRange", {"conditioning": cond, "start": 0.1, "end": 0.7}))
    out.append(("StringConcatenate", {"string_a": "a", "string_b": "b", "delimiter": " - "}))
    out.append(("StringReplace", {"string": "a.b.c", "find": ".", "replace": "::"}))
    out.append(("StringSubstring", {"string": "abcdefgh", "start": -5, "end": 7}))
    out.append(("StringLength", {"string": "héllo wörld"}))
    for mode in ("Starts With", "Ends With", "Equal"):
        out.append(
            (
                "StringCompare",
                {"string_a": "Hello", "string_b": "hello", "mode": mode, "case_sensitive": False},
            )
        )
    out.append(
        (
            "RegexMatch",
            {
                "string": "A\nb",
                "regex_pattern": "^b",
                "case_insensitive": False,
                "multiline": True,
                "dotall": False,
            },
        )
    )
    for mode in ("First Match", "All Matches", "First Group", "All Groups"):
        out.append(
            (
                "RegexExtract",
                {
                    "string": "x1 y22 z333",
                    "regex_pattern": r"([a-z])(\d+)",
                    "mode": mode,
                    "case_insensitive": True,
                    "multiline": False,
                    "dotall": False,
                    "group_index": 2,
                },
            )
        )
    return out


def difference(a: Any, b: Any) -> float:
    """Largest absolute difference between two outputs; inf when their structure differs."""
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        if a.shape != b.shape:
            return float("inf")
        return float((a.float() - b.float()).abs().max()) if a.numel() else 0.0
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return float("inf")
        return max((difference(a[k], b[k]) for k in a), default=0.0)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return float("inf")
        return max((difference(x, y) for x, y in zip(a, b, strict=True)), default=0.0)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return abs(a - b)
    return 0.0 if a == b else float("inf")


def run_loom(node: str, inputs: dict[str, Any], registry: Any) -> tuple[Any, ...]:
    spec = registry.get(node)
    result = spec.invoke(spec.cls(), dict(inputs), None)
    return tuple(result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--comfy", type=Path, default=Path("/tmp/comfy"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    all_cases = cases()
    work = Path(tempfile.mkdtemp(prefix="loom_values_"))
    torch.save(all_cases, work / "cases.pt")
    (work / "comfy_side.py").write_text(COMFY_SIDE)
    subprocess.run(
        [
            str(args.comfy / "venv/bin/python"),
            str(work / "comfy_side.py"),
            str(work / "cases.pt"),
            str(work / "out.pt"),
        ],
        cwd=args.comfy / "ComfyUI",
        check=True,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    comfy_results = torch.load(work / "out.pt", weights_only=False)
    registry = builtin_registry()
    exact = close = differ = 0
    print(f"{'node':32} {'max |difference|':>18}  note")
    for (node, inputs), (status, comfy_out) in zip(all_cases, comfy_results, strict=True):
        try:
            loom_out = run_loom(node, inputs, registry)
        except Exception as exc:  # report and go on: one failing case must not hide the rest
            loom_out, note = None, f"Loom raised {type(exc).__name__}: {exc}"
        else:
            note = ""
        if status != "ok":
            note = f"ComfyUI raised {comfy_out}" + (f"; {note}" if note else "")
            value = float("inf") if loom_out is not None else 0.0
        else:
            value = difference(comfy_out, loom_out) if loom_out is not None else float("inf")
        exact += value == 0.0
        close += 0.0 < value <= 1e-5
        differ += value > 1e-5
        print(f"{node:32} {value:18.3g}  {note}")
    print(f"\n{len(all_cases)} cases: {exact} identical, {close} within 1e-5, {differ} differ")


if __name__ == "__main__":
    main()
