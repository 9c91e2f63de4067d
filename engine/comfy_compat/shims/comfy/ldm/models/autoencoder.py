"""ComfyUI's comfy.ldm.models.autoencoder: its LDM autoencoder classes.

Loom's VAE network is diffusers' AutoencoderKL (`vae.first_stage_model`), not these: the names exist
for packs that import or test against them (`isinstance` is False for Loom's VAEs); constructing one
raises an error naming the class. Encode and decode through `comfy.sd.VAE`.
"""

from engine.comfy_compat.unavailable import not_provided

AbstractAutoencoder = not_provided(__name__, "AbstractAutoencoder")
AutoencodingEngine = not_provided(__name__, "AutoencodingEngine")
AutoencodingEngineLegacy = not_provided(__name__, "AutoencodingEngineLegacy")
AutoencoderKL = not_provided(__name__, "AutoencoderKL")
DiagonalGaussianRegularizer = not_provided(__name__, "DiagonalGaussianRegularizer")

__all__ = [
    "AbstractAutoencoder",
    "AutoencoderKL",
    "AutoencodingEngine",
    "AutoencodingEngineLegacy",
    "DiagonalGaussianRegularizer",
]
