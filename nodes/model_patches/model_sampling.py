"""ModelSampling nodes for rectified-flow models (ComfyUI's nodes_model_advanced names and inputs).

Each returns a clone of MODEL whose `model_sampling` object patch is a flow sampling with the
given shift (engine.sampling.model_sampling_flow); schedulers and samplers read it from there.
"""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Model, Node
from nodes.image.basic import MAX_RESOLUTION

SHIFT = Input(
    "Moves the schedule toward high noise; higher suits larger images.", min=0.0, max=100.0, step=0.01
)
CATEGORY = "advanced/model"


def _with_sampling(model: Model, sampling: object) -> Model:
    patched = model.clone()
    patched.add_object_patch("model_sampling", sampling)
    return patched


class ModelSamplingSD3(Node):
    """Sample as a rectified-flow model with SD3's timestep shift (the network sees t × 1000)."""

    category = CATEGORY

    def run(
        self, model: Annotated[Model, Input("The model to patch.")], shift: Annotated[float, SHIFT] = 3.0
    ) -> Model:
        from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow

        return _with_sampling(model, ModelSamplingDiscreteFlow(shift=shift, multiplier=1000))


class ModelSamplingAuraFlow(Node):
    """Sample as a rectified-flow model with SD3's shift and the timestep in [0, 1] (AuraFlow, Z-Image)."""

    category = CATEGORY

    def run(
        self, model: Annotated[Model, Input("The model to patch.")], shift: Annotated[float, SHIFT] = 1.73
    ) -> Model:
        from engine.sampling.model_sampling_flow import ModelSamplingDiscreteFlow

        return _with_sampling(model, ModelSamplingDiscreteFlow(shift=shift, multiplier=1.0))


SIZE = Input("The image size in pixels the shift is computed for.", min=16, max=MAX_RESOLUTION, step=8)


class ModelSamplingFlux(Node):
    """Flux's resolution-dependent shift: base_shift at 256 latent patches, max_shift at 4096."""

    category = CATEGORY

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        max_shift: Annotated[float, SHIFT] = 1.15,
        base_shift: Annotated[float, SHIFT] = 0.5,
        width: Annotated[int, SIZE] = 1024,
        height: Annotated[int, SIZE] = 1024,
    ) -> Model:
        from engine.sampling.model_sampling_flow import ModelSamplingFlux as Sampling
        from engine.sampling.model_sampling_flow import flux_shift

        return _with_sampling(model, Sampling(shift=flux_shift(max_shift, base_shift, width, height)))
