"""ModelSamplingDiscrete: replace a discrete-time model's model_sampling object (an object patch) to
sample it as eps, v-prediction, LCM, x0 or img_to_img, optionally with a zero-terminal-SNR table."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node
from engine.sampling.model_sampling import ModelSampling, _per_sample
from engine.sampling.model_sampling_x0 import ImgToImgSampling, X0Sampling

SAMPLINGS = ("eps", "v_prediction", "lcm", "x0", "img_to_img")
# ComfyUI pins alphabar at the last timestep of a zsnr table so its sigma stays finite.
ZSNR_LAST_ALPHABAR = 4.8973451890853435e-08


class LCMSampling(ModelSampling):
    """Latent consistency models: eps output mixed with the input by c_skip/c_out of the timestep, on the
    50-step table the model was distilled for."""

    original_timesteps = 50

    def distill(self) -> None:
        self.skip_steps = len(self.sigmas) // self.original_timesteps
        picked = [len(self.sigmas) - 1 - i * self.skip_steps for i in range(self.original_timesteps)]
        self.sigmas = self.sigmas[list(reversed(picked))].clone()
        self.log_sigmas = self.sigmas.log()

    def timestep(self, sigma: Any) -> Any:
        return super().timestep(sigma) * self.skip_steps + (self.skip_steps - 1)

    def sigma(self, timestep: Any) -> Any:
        import torch

        timestep = torch.as_tensor(timestep)
        return super().sigma((timestep.float() - (self.skip_steps - 1)) / self.skip_steps)

    def calculate_denoised(self, sigma: Any, model_output: Any, x: Any) -> Any:
        import torch

        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1)
        timestep = _per_sample(self.timestep(sigma), x).float()
        sigma = _per_sample(sigma, x)
        x0 = x - model_output * sigma
        sigma_data = 0.5
        scaled = timestep * 10.0
        c_skip = sigma_data**2 / (scaled**2 + sigma_data**2)
        c_out = scaled / (scaled**2 + sigma_data**2) ** 0.5
        return c_out * x0 + c_skip * x


def zero_terminal_snr(sigmas: Any) -> Any:
    """Shift and rescale sqrt(alphabar) so the last timestep has (almost) zero signal."""
    root = (1 / (sigmas * sigmas + 1)).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alphabar = root**2
    alphabar[-1] = ZSNR_LAST_ALPHABAR
    return ((1 - alphabar) / alphabar) ** 0.5


def discrete_sampling(base: ModelSampling, sampling: str, zsnr: bool) -> ModelSampling:
    """A new model_sampling on `base`'s sigma table, parameterised as `sampling`."""
    kinds: dict[str, type[ModelSampling]] = {
        "eps": ModelSampling,
        "v_prediction": ModelSampling,
        "lcm": LCMSampling,
        "x0": X0Sampling,
        "img_to_img": ImgToImgSampling,
    }
    made = kinds[sampling]("v_prediction" if sampling == "v_prediction" else "eps")
    made.sigmas = zero_terminal_snr(base.sigmas.clone()) if zsnr else base.sigmas.clone()
    made.log_sigmas = made.sigmas.log()
    if isinstance(made, LCMSampling):
        made.distill()
    return made


class ModelSamplingDiscrete(Node):
    """Sample a discrete-time model with another parameterisation (eps, v, LCM, x0) or a zsnr table."""

    category = "advanced/model"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        sampling: Annotated[str, Input("What the network predicts.", choices=SAMPLINGS)],
        zsnr: Annotated[bool, Input("Rescale the sigma table to zero terminal SNR.")] = False,
    ) -> Model:
        # ComfyUI rebuilds from the model's config, so an earlier model_sampling patch does not stack.
        base = model.object_patches_backup.get("model_sampling", model.model.model_sampling)
        if not isinstance(base, ModelSampling):
            raise ValueError(
                f"ModelSamplingDiscrete: input 'model' is not a discrete-time model "
                f"(its model_sampling is {type(base).__name__})"
            )
        patched = model.clone()
        patched.add_object_patch("model_sampling", discrete_sampling(base, sampling, zsnr))
        return patched
