"""Model merging as weight patches: model2's UNet weights (with its own patches) are added to a clone of
model1 through get_key_patches/add_patches, so nothing is copied until the model is sampled."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node

MERGING = "advanced/model_merging"
UNET_PREFIX = "diffusion_model."


def _merged(model1: Any, model2: Any, strength_patch: float, strength_model: float) -> Any:
    """model1 * strength_model + model2 * strength_patch, key by key (keys model1 lacks are skipped)."""
    merged = model1.clone()
    for key, patches in model2.get_key_patches(UNET_PREFIX).items():
        merged.add_patches({key: patches}, strength_patch, strength_model)
    return merged


class ModelMergeSimple(Node):
    """Blend two models' UNet weights: ratio 1 keeps model1, 0 gives model2."""

    category = MERGING

    def run(
        self,
        model1: Annotated[Model, Input("The first model (weight ratio).")],
        model2: Annotated[Model, Input("The second model (weight 1 - ratio).")],
        ratio: Annotated[float, Input("Share of model1.", min=0.0, max=1.0, step=0.01)] = 1.0,
    ) -> Model:
        return _merged(model1, model2, 1.0 - ratio, ratio)


class ModelMergeSubtract(Node):
    """(model1 - model2) * multiplier, e.g. to extract what a fine-tune added."""

    category = MERGING

    def run(
        self,
        model1: Annotated[Model, Input("The model subtracted from.")],
        model2: Annotated[Model, Input("The model subtracted.")],
        multiplier: Annotated[float, Input("Scale of the difference.", min=-10.0, max=10.0, step=0.01)] = 1.0,
    ) -> Model:
        return _merged(model1, model2, -multiplier, multiplier)


class ModelMergeAdd(Node):
    """model1 + model2, e.g. to add a difference made by ModelMergeSubtract back onto a model."""

    category = MERGING

    def run(
        self,
        model1: Annotated[Model, Input("The first model.")],
        model2: Annotated[Model, Input("The model added to it.")],
    ) -> Model:
        return _merged(model1, model2, 1.0, 1.0)
