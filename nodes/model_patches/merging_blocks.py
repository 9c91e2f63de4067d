"""Model merging by block: a ratio per group of UNet weights, chosen by ComfyUI's key prefixes.

Each weight `diffusion_model.<name>` takes the ratio of the longest input name that `<name>` starts with
(so ModelMergeBlocks' `out` covers `output_blocks.*` and `out.*`); a weight no input names takes the
first ratio input (ModelMergeBlocks' `input`, ModelMergeSD1's `time_embed.`). ComfyUI takes the first
input of the submitted prompt instead, which is the same for prompts its front end writes.

These nodes use ComfyUI's class convention because their input names (`input_blocks.4.`) are not
Python identifiers; the merge itself is ModelMergeSimple's, through get_key_patches/add_patches.
"""

from __future__ import annotations

from typing import Any, ClassVar

from nodes.model_patches.merging import MERGING, UNET_PREFIX

MODEL_SPECIFIC = MERGING + "/model_specific"
RATIO = ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01})


def block_ratio(name: str, ratios: dict[str, float], default: float) -> float:
    """The ratio of the longest prefix of `name` (a UNet weight name without `diffusion_model.`)."""
    best = ""
    for prefix in ratios:
        if name.startswith(prefix) and len(prefix) > len(best):
            best = prefix
    return ratios[best] if best else default


def merge_blocks(model1: Any, model2: Any, ratios: dict[str, float]) -> Any:
    """A clone of model1 whose weights are `model1 * ratio + model2 * (1 - ratio)`, ratio per block."""
    if not ratios:
        raise ValueError("merge_blocks needs at least one ratio")
    default = next(iter(ratios.values()))
    merged = model1.clone()
    for key, patches in model2.get_key_patches(UNET_PREFIX).items():
        ratio = block_ratio(key[len(UNET_PREFIX) :], ratios, default)
        merged.add_patches({key: patches}, 1.0 - ratio, ratio)
    return merged


class _BlockMerge:
    """ComfyUI-convention node: model1, model2, then one ratio per name in BLOCKS."""

    BLOCKS: ClassVar[tuple[str, ...]] = ()
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "merge"
    CATEGORY = MERGING

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        inputs: dict[str, Any] = {"model1": ("MODEL",), "model2": ("MODEL",)}
        inputs.update({block: RATIO for block in cls.BLOCKS})
        return {"required": inputs}

    def merge(self, model1: Any, model2: Any, **ratios: float) -> tuple[Any]:
        unknown = sorted(set(ratios) - set(self.BLOCKS))
        if unknown:
            raise ValueError(f"{type(self).__name__}: unknown ratio inputs {unknown}")
        return (merge_blocks(model1, model2, {block: float(ratios[block]) for block in self.BLOCKS}),)


class ModelMergeBlocks(_BlockMerge):
    DESCRIPTION = (
        "Blend two models' UNet weights with one ratio for the input blocks, one for the middle block "
        "and one for the output blocks (1 keeps model1, 0 gives model2)."
    )
    BLOCKS = ("input", "middle", "out")


def _unet_blocks(inputs: int, suffix: str) -> tuple[str, ...]:
    return (
        "time_embed.",
        "label_emb.",
        *(f"input_blocks.{i}{suffix}" for i in range(inputs)),
        *(f"middle_block.{i}{suffix}" for i in range(3)),
        *(f"output_blocks.{i}{suffix}" for i in range(inputs)),
        "out.",
    )


class ModelMergeSD1(_BlockMerge):
    DESCRIPTION = "Blend two SD1.x/SD2.x models block by block (ComfyUI's SD1 UNet block names)."
    CATEGORY = MODEL_SPECIFIC
    BLOCKS = _unet_blocks(12, ".")


class ModelMergeSDXL(_BlockMerge):
    DESCRIPTION = "Blend two SDXL models block by block (ComfyUI's SDXL UNet block names)."
    CATEGORY = MODEL_SPECIFIC
    # ComfyUI declares the SDXL block inputs without the trailing dot ("input_blocks.4").
    BLOCKS = _unet_blocks(9, "")


NODE_CLASS_MAPPINGS = {
    "ModelMergeBlocks": ModelMergeBlocks,
    "ModelMergeSD1": ModelMergeSD1,
    # SD2's UNet has SD1's blocks, so ComfyUI registers the same class under a second name.
    "ModelMergeSD2": ModelMergeSD1,
    "ModelMergeSDXL": ModelMergeSDXL,
}
