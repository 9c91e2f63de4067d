"""A test pack with a DIFFUSION_MODEL wrapper (comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL),
added the way packs add wrappers: `ModelPatcher.add_wrapper_with_key`. ComfyUI calls it around its
UNet's forward with `(executor, x, timesteps, context, y, control, transformer_options, **kwargs)`
and takes back the UNet's raw prediction (eps for SD1.5).

The wrapper scales that prediction by `scale`, so for an eps model the denoised result becomes
x - scale * sigma * eps = (1 - scale) * x + scale * denoised. It records what it was called with
in CALLS (a description with no tensors), and, when `record` names a file, appends the same
description there as one JSON line (bench/pack_patch_parity.py loads this pack into ComfyUI and
Loom and compares the two files)."""

import json

from comfy.patcher_extension import WrappersMP

CALLS: list[dict] = []


def _describe(value):
    """A JSON-able description of one argument: tensors by shape and dtype, dicts by their keys."""
    if value is None:
        return None
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
    if isinstance(value, dict):
        return {"keys": sorted(str(key) for key in value)}
    return type(value).__name__


class ScalePrediction:
    def __init__(self, scale, record):
        self.scale = scale
        self.record = record

    def __call__(self, executor, x, timesteps, context, y, control, transformer_options, **kwargs):
        call = {
            "x": _describe(x),
            "timesteps": _describe(timesteps),
            "timestep_range": [float(timesteps.min()), float(timesteps.max())],
            "context": _describe(context),
            "y": _describe(y),
            "control": _describe(control),
            "transformer_options": sorted(
                key
                for key in ("cond_or_uncond", "sigmas", "sample_sigmas", "uuids", "original_shape")
                if key in transformer_options
            ),
            "kwargs": sorted(kwargs),
            "has_class_obj": executor.class_obj is not None,
        }
        CALLS.append(call)
        if self.record:
            with open(self.record, "a", encoding="utf-8") as sink:
                sink.write(json.dumps(call) + "\n")
        out = executor(x, timesteps, context, y, control, transformer_options, **kwargs)
        return out * self.scale


class PatchDiffusionModel:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.01}),
            },
            "optional": {"record": ("STRING", {"default": ""})},
        }

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"
    CATEGORY = "test/patches"

    def patch(self, model, scale, record=""):
        m = model.clone()
        m.add_wrapper_with_key(WrappersMP.DIFFUSION_MODEL, "test_scale", ScalePrediction(scale, record))
        return (m,)


NODE_CLASS_MAPPINGS = {"PatchDiffusionModel": PatchDiffusionModel}
