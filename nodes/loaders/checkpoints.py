"""Loaders: checkpoints, VAEs, LoRAs, and CLIP layer selection (ComfyUI's names and inputs)."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, NamedTuple

from engine import folders
from engine.diffusion import handles
from engine.native import Clip, Input, Model, Node, Vae

MODEL_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def model_files(kind: str) -> list[str]:
    return [name for name in folders.current().model_files(kind) if name.lower().endswith(MODEL_SUFFIXES)]


def checkpoint_files() -> list[str]:
    return model_files("checkpoints")


def vae_files() -> list[str]:
    return model_files("vae")


def vae_loader_choices() -> list[str]:
    """The VAE files, then ComfyUI's built-in `pixel_space` (the pass-through of pixel-space models)."""
    from engine.diffusion.pixel_vae import PIXEL_SPACE

    return [*vae_files(), PIXEL_SPACE]


def lora_files() -> list[str]:
    return model_files("loras")


class CheckpointOutputs(NamedTuple):
    MODEL: Model
    CLIP: Clip
    VAE: Vae


class CheckpointLoaderSimple(Node):
    """Load a Stable Diffusion checkpoint (SD1.x, SD2.x, SDXL) from models/checkpoints: the denoising
    model, the text encoder(s) and the VAE. A file loads once and is shared by every prompt.

    The shipped loom_default.safetensors is small: it draws flat shapes on white at 64×64 from
    prompts of one grammar, "a [small|large] <colour> <circle|square|triangle> [on the left|on the
    right|at the top|at the bottom|in the center]" (docs/default-model.md). Give it a 64×64 latent:
    at 512×512 it draws a grid of tiny shapes."""

    display_name = "Load Checkpoint"
    category = "loaders"

    def run(
        self, ckpt_name: Annotated[str, Input("The checkpoint file.", choices=checkpoint_files)]
    ) -> CheckpointOutputs:
        loaded = handles.load(folders.current().model_path("checkpoints", ckpt_name))
        return CheckpointOutputs(loaded.model, loaded.clip, loaded.vae)


class VAELoader(Node):
    """Load a standalone VAE from models/vae (original or diffusers key layout), or `pixel_space`: no VAE,
    for models that sample the image itself (Chroma Radiance), which only rescales 0..1 to −1..1 and back."""

    display_name = "Load VAE"
    category = "loaders"

    def run(self, vae_name: Annotated[str, Input("The VAE file.", choices=vae_loader_choices)]) -> Vae:
        from engine.diffusion.pixel_vae import PIXEL_SPACE, PixelSpaceVAE

        if vae_name == PIXEL_SPACE:
            return PixelSpaceVAE.create()
        return handles.load_vae(folders.current().model_path("vae", vae_name))


class ModelAndClip(NamedTuple):
    MODEL: Model
    CLIP: Clip


STRENGTH = Input(
    "How strongly the LoRA changes the weights; 0 leaves them as they are.", min=-100.0, max=100.0, step=0.01
)


class LoraLoader(Node):
    """Apply a LoRA from models/loras to the model and the text encoder (kohya/A1111 or diffusers layout)."""

    display_name = "Load LoRA"
    category = "loaders"

    def run(
        self,
        model: Annotated[Model, Input("The model the LoRA applies to.")],
        clip: Annotated[Clip, Input("The text encoder the LoRA applies to.")],
        lora_name: Annotated[str, Input("The LoRA file.", choices=lora_files)],
        strength_model: Annotated[float, STRENGTH] = 1.0,
        strength_clip: Annotated[float, STRENGTH] = 1.0,
    ) -> ModelAndClip:
        patched_model, patched_clip = handles.apply_lora(
            folders.current().model_path("loras", lora_name), model, clip, strength_model, strength_clip
        )
        return ModelAndClip(patched_model, patched_clip)


class LoraLoaderModelOnly(Node):
    """Apply a LoRA from models/loras to the model only."""

    display_name = "LoraLoaderModelOnly"
    category = "loaders"

    def run(
        self,
        model: Annotated[Model, Input("The model the LoRA applies to.")],
        lora_name: Annotated[str, Input("The LoRA file.", choices=lora_files)],
        strength_model: Annotated[float, STRENGTH] = 1.0,
    ) -> Model:
        patched, _ = handles.apply_lora(
            folders.current().model_path("loras", lora_name), model, None, strength_model, 0.0
        )
        return patched


class CLIPSetLastLayer(Node):
    """Condition on an earlier layer of the text encoder (-1 is the last, -2 the one before: "clip skip")."""

    display_name = "CLIP Set Last Layer"
    category = "conditioning"

    def run(
        self,
        clip: Annotated[Clip, Input("The text encoder.")],
        stop_at_clip_layer: Annotated[
            int, Input("The layer to read, counted from the end.", min=-24, max=-1, step=1)
        ] = -1,
    ) -> Clip:
        return replace(clip, layer=stop_at_clip_layer)
