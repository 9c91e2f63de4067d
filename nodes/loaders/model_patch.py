"""Model patches (ComfyUI's `comfy_extras/nodes_model_patch.py`, 0.3.64 and newer): ModelPatchLoader reads
a MODEL_PATCH from models/model_patches; QwenImageDiffsynthControlnet puts DiffSynth's block-wise ControlNet
on a Qwen-Image model (engine.diffusion.model_patch_files) or, given a Z-Image Fun ControlNet, that one on a
Z-Image model (nodes.loaders.model_patch_zimage); USOStyleReference puts USO's style projector on a Flux
model as a "post_input" patch (engine.diffusion.uso_style)."""

from __future__ import annotations

from typing import Annotated, Any

from engine import folders
from engine.native import Image, Input, Mask, Model, Node, Socket, Vae
from nodes.conditioning.vision import ClipVisionOutput
from nodes.loaders.checkpoints import model_files

ModelPatch = Annotated[Any, Socket("MODEL_PATCH")]


class ModelPatchLoader(Node):
    """Load a model patch from models/model_patches: a Qwen-Image DiffSynth ControlNet (canny, depth,
    inpaint), a Z-Image Fun ControlNet (alibaba-pai's Union 1.0 / 2.0 / 2.1 / lite) or USO's style projector
    for Flux (USOStyleReference)."""

    category = "advanced/loaders"
    experimental = True

    def run(
        self,
        name: Annotated[str, Input("The model patch file.", choices=lambda: model_files("model_patches"))],
    ) -> ModelPatch:
        from engine.diffusion.model_patch_files import ModelPatchError, load_model_patch

        try:
            path = folders.current().model_path("model_patches", name)
            return load_model_patch(path)
        except (FileNotFoundError, ModelPatchError) as exc:
            raise ValueError(f"ModelPatchLoader: name {name!r}: {exc}") from exc


class QwenImageDiffsynthControlnet(Node):
    """Steer a Qwen-Image model with a control image (canny, depth; with the inpaint patch, the image to
    inpaint and an optional mask of what to repaint) through a DiffSynth block-wise ControlNet; or a Z-Image
    model through a Z-Image Fun ControlNet (as ZImageFunControlnet, without an inpaint image)."""

    category = "advanced/loaders/qwen"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("A Qwen-Image model.")],
        model_patch: Annotated[ModelPatch, Input("A DiffSynth ControlNet (ModelPatchLoader).")],
        vae: Annotated[Vae, Input("Qwen-Image's VAE, to encode the control image.")],
        image: Annotated[Image, Input("The control image.")],
        strength: Annotated[
            float, Input("How strongly the control steers the image.", min=-10.0, max=10.0, step=0.01)
        ] = 1.0,
        mask: Annotated[Mask | None, Input("Inpaint patch: where to repaint (1).")] = None,
    ) -> Model:
        from engine.diffusion.model_patch_files import DiffSynthControl

        if getattr(model_patch, "kind", None) == "zimage_fun_controlnet":
            from nodes.loaders.model_patch_zimage import apply_zimage_fun

            return apply_zimage_fun(
                "QwenImageDiffsynthControlnet", model, model_patch, vae, strength, image, None, mask
            )
        _check("QwenImageDiffsynthControlnet", model, model_patch, vae)
        keep = (
            None
            if mask is None
            else 1.0 - (mask if mask.ndim == 4 else mask.reshape(-1, 1, *mask.shape[-2:]))
        )
        patched = model.clone()
        patched.set_model_double_block_patch(
            DiffSynthControl(model_patch, vae, image[..., :3], strength, keep)
        )
        return patched


def _check(node: str, model: Any, patch: Any, vae: Any) -> None:
    """The patch, the model and the VAE must fit together: say which input does not."""
    if getattr(patch, "kind", None) != "qwen_blockwise_controlnet":
        raise ValueError(
            f"{node}: input 'model_patch' must be a Qwen-Image DiffSynth ControlNet "
            "or a Z-Image Fun ControlNet; "
            f"got {getattr(patch, 'kind', type(patch).__name__)}"
        )
    if getattr(model, "family", None) != "qwen_image":
        raise ValueError(
            f"{node}: input 'model' must be a Qwen-Image model; got {getattr(model, 'family', '?')}"
        )
    transformer = model.unet
    width = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    blocks = len(transformer.transformer_blocks)
    if patch.width != width or patch.layers < blocks:
        raise ValueError(
            f"{node}: input 'model_patch' {patch.name!r} is {patch.width} wide with {patch.layers} blocks, "
            f"but the model is {width} wide with {blocks} blocks"
        )
    if getattr(vae, "latent_channels", None) != 16:
        raise ValueError(
            f"{node}: input 'vae' must be Qwen-Image's VAE (16 latent channels); "
            f"got {getattr(vae, 'latent_channels', '?')}"
        )


class USOStyleReference(Node):
    """Give a Flux model (with the USO LoRA) a style reference: USO's projector turns three layers of SigLIP
    features of the reference image into style tokens placed before the prompt's tokens."""

    category = "advanced/model_patches/flux"
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("A Flux model.")],
        model_patch: Annotated[ModelPatch, Input("USO's style projector (ModelPatchLoader).")],
        clip_vision_output: Annotated[ClipVisionOutput, Input("SigLIP features of the style image.")],
    ) -> Model:
        from engine.diffusion.model_patch_files import ModelPatchError
        from engine.diffusion.uso_style import UsoStylePatch, check_projector, siglip_layers

        node = "USOStyleReference"
        if getattr(model_patch, "kind", None) != "uso_style_projector":
            raise ValueError(
                f"{node}: input 'model_patch' must be USO's style projector "
                f"(uso-flux1-projector); got {getattr(model_patch, 'kind', type(model_patch).__name__)}"
            )
        if getattr(model, "family", None) != "flux":
            raise ValueError(
                f"{node}: input 'model' must be a Flux.1 model; got {getattr(model, 'family', '?')}"
            )
        try:
            tokens, dims, width = check_projector(model_patch)
        except ModelPatchError as exc:
            raise ValueError(f"{node}: input 'model_patch': {exc}") from exc
        layers = siglip_layers(clip_vision_output, node)
        if tuple(layers.shape[2:]) != (tokens, dims):
            raise ValueError(
                f"{node}: input 'clip_vision_output' holds {layers.shape[2]} tokens {layers.shape[3]} wide, "
                f"but the projector reads {tokens} tokens {dims} wide (SigLIP so400m at 384 px)"
            )
        config = model.unet.config
        inner = config.num_attention_heads * config.attention_head_dim
        if width != inner:
            raise ValueError(
                f"{node}: input 'model_patch' writes tokens {width} wide, but the model is {inner} wide"
            )
        patched = model.clone()
        patched.set_model_post_input_patch(UsoStylePatch(model_patch, layers))
        return patched
