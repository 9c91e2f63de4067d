"""Stand-ins for the scheduler, sampler and noise nodes (their real versions live in
nodes/sampling/custom_sampling.py, written beside this work), with the same SIGMAS / SAMPLER / NOISE
contract: SIGMAS is a 1-D tensor, SAMPLER has `.sample(model_fn, noise, latent, sigmas, *, callback,
seed, denoise_mask, model_sampling)`, NOISE has `.seed` and `.generate_noise(latent_dict)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from engine.native import Input, Model, Node, Socket


@dataclass(frozen=True)
class NamedSampler:
    name: str

    def sample(
        self,
        model_fn: Any,
        noise: Any,
        latent: Any,
        sigmas: Any,
        *,
        callback: Any = None,
        seed: Any = None,
        denoise_mask: Any = None,
        model_sampling: Any,
    ) -> Any:
        from engine.sampling import sample

        return sample(
            model_fn,
            noise,
            latent,
            sigmas,
            self.name,
            model_sampling=model_sampling,
            callback=callback,
            seed=seed,
            denoise_mask=denoise_mask,
        )


@dataclass(frozen=True)
class SeedNoise:
    seed: int

    def generate_noise(self, latent: dict[str, Any]) -> Any:
        from engine.sampling import prepare_noise

        return prepare_noise(latent["samples"], self.seed, latent.get("batch_index"))


class TestSamplerSelect(Node):
    """A SAMPLER by name."""

    def run(
        self, sampler_name: Annotated[str, Input("Sampler name.")] = "euler"
    ) -> Annotated[Any, Socket("SAMPLER")]:
        return NamedSampler(sampler_name)


class TestBasicScheduler(Node):
    """SIGMAS of a named scheduler for a MODEL."""

    def run(
        self,
        model: Annotated[Model, Input("Model.")],
        scheduler: Annotated[str, Input("Scheduler.")] = "normal",
        steps: Annotated[int, Input("Steps.", min=1)] = 3,
        sampler_name: Annotated[str, Input("Sampler the schedule is for.")] = "euler",
    ) -> Annotated[Any, Socket("SIGMAS")]:
        from engine.sampling import sigmas_for

        return sigmas_for(model.get_model_object("model_sampling"), scheduler, steps, 1.0, sampler_name)


class TestRandomNoise(Node):
    """NOISE from a seed."""

    def run(self, noise_seed: Annotated[int, Input("Seed.", min=0)] = 0) -> Annotated[Any, Socket("NOISE")]:
        return SeedNoise(noise_seed)
