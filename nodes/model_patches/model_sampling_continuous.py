"""ModelSamplingContinuousEDM and ModelSamplingContinuousV: sample a model as one trained on a continuous
range of noise levels (EDM-style models such as Playground v2.5 and the SDXL-based CosXL, or continuous
v-prediction ones), with ComfyUI's inputs. Each returns a clone whose `model_sampling` object patch is
an engine.sampling.model_sampling_continuous sampling (Playground v2.5 also patches `latent_format`)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Model, Node

EDM_SAMPLINGS = ("v_prediction", "edm", "edm_playground_v2.5", "eps", "cosmos_rflow")
SIGMA = {"min": 0.0, "max": 1000.0, "step": 0.001, "round": False}


def _positive(node: str, **sigmas: float) -> None:
    for name, value in sigmas.items():
        if value <= 0:
            raise ValueError(f"{node}: input '{name}' must be greater than 0 (got {value})")
    low, high = sigmas["sigma_min"], sigmas["sigma_max"]
    if low >= high:
        raise ValueError(f"{node}: input 'sigma_min' ({low}) must be below 'sigma_max' ({high})")


class ModelSamplingContinuousEDM(Node):
    """Sample on a continuous log-spaced schedule from sigma_max to sigma_min, with the given output type."""

    category = "advanced/model"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        sampling: Annotated[str, Input("What the network predicts.", choices=EDM_SAMPLINGS)],
        sigma_max: Annotated[float, Input("Highest noise level of the schedule.", **SIGMA)] = 120.0,
        sigma_min: Annotated[float, Input("Lowest noise level of the schedule.", **SIGMA)] = 0.002,
    ) -> Model:
        from engine.diffusion.latent_formats import SDXL_Playground_2_5
        from engine.sampling.model_sampling_continuous import ContinuousEDMSampling, CosmosRFlowSampling

        _positive("ModelSamplingContinuousEDM", sigma_max=sigma_max, sigma_min=sigma_min)
        patched = model.clone()
        if sampling == "cosmos_rflow":
            made: ContinuousEDMSampling = CosmosRFlowSampling(sigma_min, sigma_max, 1.0)
        elif sampling in ("edm", "edm_playground_v2.5"):
            made = ContinuousEDMSampling("edm", sigma_min, sigma_max, 0.5)
        else:
            made = ContinuousEDMSampling(sampling, sigma_min, sigma_max, 1.0)
        patched.add_object_patch("model_sampling", made)
        if sampling == "edm_playground_v2.5":
            patched.add_object_patch("latent_format", SDXL_Playground_2_5())
        return patched


class ModelSamplingContinuousV(Node):
    """Sample as a v-prediction model on a continuous schedule (network time 2 atan(sigma) / pi)."""

    category = "advanced/model"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        sampling: Annotated[str, Input("What the network predicts.", choices=("v_prediction",))],
        sigma_max: Annotated[float, Input("Highest noise level of the schedule.", **SIGMA)] = 500.0,
        sigma_min: Annotated[float, Input("Lowest noise level of the schedule.", **SIGMA)] = 0.03,
    ) -> Model:
        from engine.sampling.model_sampling_continuous import ContinuousVSampling

        _positive("ModelSamplingContinuousV", sigma_max=sigma_max, sigma_min=sigma_min)
        patched = model.clone()
        patched.add_object_patch("model_sampling", ContinuousVSampling(sigma_min, sigma_max, 1.0))
        return patched
