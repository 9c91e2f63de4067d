"""Discrete-time models that predict the clean latent: ComfyUI's X0 and IMG_TO_IMG model types.

X0: the network sees the usual c_in-scaled input and returns x0 itself. IMG_TO_IMG (Lotus-D's type): the
network sees the latent unscaled and returns x0, so one Euler step from any sigma to 0 gives exactly the
network's output. Both keep SD's sigma table and eps-style noise scaling.
"""

from __future__ import annotations

from torch import Tensor

from engine.sampling.model_sampling import ModelSampling


class X0Sampling(ModelSampling):
    """The network predicts the clean latent itself."""

    def calculate_denoised(self, sigma: Tensor, model_output: Tensor, x: Tensor) -> Tensor:
        return model_output


class ImgToImgSampling(X0Sampling):
    """x0 prediction from the unscaled input (ComfyUI's IMG_TO_IMG)."""

    def calculate_input(self, sigma: Tensor, x: Tensor) -> Tensor:
        return x
