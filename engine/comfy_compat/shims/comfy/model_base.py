"""ComfyUI's comfy.model_base: the class of `ModelPatcher.model` and the ModelType enum.

`BaseModel` is Loom's DiffusionModel (a diffusers UNet with its sampling and latent format);
`SD15`, `SD20`, `SD21UNCLIP`, `SDXL`, `SDXLRefiner` and the InstructPix2Pix ones are its per-family
subclasses, so packs' isinstance checks answer as in ComfyUI. Other ComfyUI model classes name
families Loom does not load.
"""

from typing import Any

import torch as _torch

from engine.diffusion import unclip as _unclip
from engine.diffusion.diffusion_model import (
    SD15,
    SD20,
    SD21UNCLIP,
    SDXL,
    DiffusionModel,
    ModelType,
    SD15_instructpix2pix,
    SDXL_instructpix2pix,
    SDXLRefiner,
)

BaseModel = DiffusionModel

__all__ = [
    "SD15",
    "SD20",
    "SD21UNCLIP",
    "SDXL",
    "BaseModel",
    "CLIPEmbeddingNoiseAugmentation",
    "ModelType",
    "SD15_instructpix2pix",
    "SDXLRefiner",
    "SDXL_instructpix2pix",
    "Timestep",
    "sdxl_pooled",
]


# The pieces of ComfyUI's SDXL ADM input packs reuse when they define their own SDXL variants.


class Timestep(_torch.nn.Module):
    """The sinusoidal embedding of a timestep tensor, `dim` wide (cosines then sines)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, t: _torch.Tensor) -> _torch.Tensor:
        return _unclip.timestep_embedding(t, self.dim)


class CLIPEmbeddingNoiseAugmentation(_unclip.CLIPEmbeddingNoiseAugmentation):
    """ComfyUI's unCLIP noise augmentor, over Loom's (the squaredcos_cap_v2 schedule, data mean 0 and
    std 1, which is what ComfyUI uses without a stats file). `forward(x, noise_level, seed)` takes a
    level tensor per batch entry (random levels when None) and returns (noised x, level embedding)."""

    def __init__(
        self,
        *args: Any,
        clip_stats_path: str | None = None,
        timestep_dim: int = 256,
        noise_schedule_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        schedule = dict(noise_schedule_config or {})
        if schedule.get("beta_schedule", "squaredcos_cap_v2") != "squaredcos_cap_v2" or clip_stats_path:
            raise NotImplementedError(
                "CLIPEmbeddingNoiseAugmentation: Loom has the squaredcos_cap_v2 schedule without CLIP "
                f"statistics only (asked for {schedule.get('beta_schedule')!r}, stats {clip_stats_path!r})"
            )
        super().__init__(timestep_dim, int(schedule.get("timesteps", 1000)))

    def __call__(self, x: Any, noise_level: Any = None, seed: int | None = None) -> Any:
        if isinstance(noise_level, int):  # Loom's own call (unclip_adm)
            return super().__call__(x, noise_level, seed)
        return self.forward(x, noise_level, seed)

    def forward(self, x: Any, noise_level: Any = None, seed: int | None = None) -> Any:
        if noise_level is None:
            noise_level = _torch.randint(0, self.max_noise_level, (x.shape[0],))
        levels = noise_level.reshape(-1).tolist()
        one = super().__call__
        rows = [one(x[i : i + 1], int(levels[i % len(levels)]), seed) for i in range(x.shape[0])]
        return _torch.cat([r[0] for r in rows]), _torch.cat([r[1] for r in rows])


def sdxl_pooled(args: dict[str, Any], noise_augmentor: Any) -> Any:
    """The pooled vector of SDXL's ADM input: the unCLIP image embedding (noised, first 1280 values)
    when the conditioning carries one, else the text encoder's pooled output."""
    if "unclip_conditioning" in args:
        adm = _unclip.unclip_adm(
            args["unclip_conditioning"], noise_augmentor, args["device"], seed=args.get("seed", 0) - 10
        )
        return adm[:, :1280]
    return args["pooled_output"]
