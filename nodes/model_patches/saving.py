"""Save nodes of ComfyUI's model-merging category: a checkpoint (MODEL, CLIP, VAE in one original-layout
file), the diffusion model alone, each text encoder, the VAE. Files land in the output folder under the
prefix's subfolder (`checkpoints/ComfyUI_00001_.safetensors`), numbered as ComfyUI numbers them, with
the weight patches (LoRA, merges) baked in and the prompt and workflow in the metadata."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from engine.context import Context
from engine.native import Clip, Input, Model, Node, Ui, Vae
from nodes.image.io import SAVE_HIDDEN, output_slot
from nodes.model_patches.merging import MERGING

PREFIX = "File name prefix in the output folder; may contain a subfolder."


def output_file(ctx: Context, filename_prefix: str) -> tuple[Path, str]:
    """(`<output>/<subfolder>/<name>_<counter>_.safetensors`, "<name> <counter>") for a prefix."""
    slot = output_slot(ctx.folders.output, filename_prefix)
    return slot.folder / f"{slot.name}_{slot.counter:05}_.safetensors", f"{slot.name} {slot.counter}"


def prompt_metadata(ctx: Context) -> dict[str, str]:
    """ComfyUI's `prompt` and workflow (extra_pnginfo) metadata entries."""
    metadata = {"prompt": json.dumps(ctx.prompt) if ctx.prompt else ""}
    metadata.update({key: json.dumps(value) for key, value in ctx.extra_pnginfo.items()})
    return metadata


def _save_checkpoint(ctx: Context, node: str, prefix: str, model: Any, clip: Any, vae: Any) -> Ui:
    from engine.diffusion.saving import SaveError, checkpoint_metadata, save_checkpoint

    path, title = output_file(ctx, prefix)
    try:
        save_checkpoint(
            path, model, clip, vae, checkpoint_metadata(model, title, ctx.prompt, ctx.extra_pnginfo)
        )
    except SaveError as exc:
        raise ValueError(f"{node}: {exc}") from exc
    return Ui()


class CheckpointSave(Node):
    """Save the model, text encoders and VAE as one checkpoint (the original single-file layout that
    ComfyUI, A1111 and Loom load), with every weight patch applied."""

    display_name = "Save Checkpoint"
    category = MERGING
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        model: Annotated[Model, Input("The diffusion model (with its LoRAs and merges).")],
        clip: Annotated[Clip, Input("The text encoders.")],
        vae: Annotated[Vae, Input("The VAE.")],
        filename_prefix: Annotated[str, Input(PREFIX)] = "checkpoints/ComfyUI",
    ) -> Ui:
        return _save_checkpoint(ctx, "CheckpointSave", filename_prefix, model, clip, vae)


class ModelSave(Node):
    """Save the diffusion model alone (`model.diffusion_model.*` keys), with its weight patches applied."""

    category = MERGING
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        model: Annotated[Model, Input("The diffusion model.")],
        filename_prefix: Annotated[str, Input(PREFIX)] = "diffusion_models/ComfyUI",
    ) -> Ui:
        return _save_checkpoint(ctx, "ModelSave", filename_prefix, model, None, None)


class CLIPSave(Node):
    """Save each text encoder to its own file (`<prefix>_clip_l_00001_.safetensors`, ...) in the
    transformers layout ComfyUI writes, with the CLIP's weight patches applied."""

    category = MERGING
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        clip: Annotated[Clip, Input("The text encoders.")],
        filename_prefix: Annotated[str, Input(PREFIX)] = "clip/ComfyUI",
    ) -> Ui:
        from safetensors.torch import save_file

        from engine.diffusion.saving import clip_files_state

        metadata = {"format": "pt", **prompt_metadata(ctx)}
        for module, state in clip_files_state(clip).items():
            path, _ = output_file(ctx, f"{filename_prefix}_{module}")
            save_file(state, str(path), metadata=metadata)
        return Ui()


class VAESave(Node):
    """Save the VAE's weights in the original layout (`encoder.*`, `decoder.*`)."""

    category = MERGING
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        vae: Annotated[Vae, Input("The VAE.")],
        filename_prefix: Annotated[str, Input(PREFIX)] = "vae/ComfyUI_vae",
    ) -> Ui:
        from safetensors.torch import save_file

        path, _ = output_file(ctx, filename_prefix)
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in vae.get_sd().items()}
        save_file(state, str(path), metadata=prompt_metadata(ctx))
        return Ui()
