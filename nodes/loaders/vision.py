"""Loaders for image-prompt models: CLIP vision encoders, unCLIP checkpoints, T2I style models, GLIGEN, and
ComfyUI's image-only (video) checkpoint loader, with ComfyUI's names, inputs and outputs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NamedTuple

from engine import folders
from engine.native import Clip, Input, Model, Node, Socket, Vae
from nodes.loaders.checkpoints import checkpoint_files, model_files

ClipVision = Annotated[Any, Socket("CLIP_VISION")]
StyleModel = Annotated[Any, Socket("STYLE_MODEL")]
GligenModel = Annotated[Any, Socket("GLIGEN")]


class FileError(ValueError):
    """A model file a loader cannot use; the message names the node, the input and the file."""


def _path(node: str, input_name: str, kind: str, name: str) -> Path:
    try:
        return folders.current().model_path(kind, name)
    except FileNotFoundError as exc:
        raise FileError(f"{node}: {input_name} {name!r}: {exc}") from exc


def _load(node: str, input_name: str, name: str, load: Any, path: Path) -> Any:
    """`load(path)`, with a model-loading failure re-raised naming the node and input."""
    from engine.models.errors import ModelLoadError

    try:
        return load(path)
    except ModelLoadError as exc:
        message = str(exc).removeprefix(f"{path}: ").removeprefix(f"{name}: ")
        raise FileError(f"{node}: {input_name} {name!r}: {message}") from exc


class CLIPVisionLoader(Node):
    """Load a CLIP vision encoder from models/clip_vision: OpenAI CLIP-ViT-L/14 (224 or 336 px), OpenCLIP
    ViT-H/14 or ViT-bigG/14, in transformers' layout or open_clip's `visual.*` layout."""

    display_name = "Load CLIP Vision"
    category = "loaders"

    def run(
        self,
        clip_name: Annotated[str, Input("The CLIP vision file.", choices=lambda: model_files("clip_vision"))],
    ) -> ClipVision:
        from engine.diffusion.clip_vision import load_clip_vision

        path = _path("CLIPVisionLoader", "clip_name", "clip_vision", clip_name)
        return _load("CLIPVisionLoader", "clip_name", clip_name, load_clip_vision, path)


class UnclipOutputs(NamedTuple):
    MODEL: Model
    CLIP: Clip
    VAE: Vae
    CLIP_VISION: ClipVision


class unCLIPCheckpointLoader(Node):
    """Load an SD2.1 unCLIP checkpoint: its UNet (which takes an image embedding), text encoder, VAE, and
    the CLIP vision encoder stored inside it (`embedder.model.visual.*`)."""

    display_name = "unCLIPCheckpointLoader"
    category = "loaders"

    def run(
        self, ckpt_name: Annotated[str, Input("The unCLIP checkpoint file.", choices=checkpoint_files)]
    ) -> UnclipOutputs:
        from engine.diffusion import handles

        node, field = "unCLIPCheckpointLoader", "ckpt_name"
        path = _path(node, field, "checkpoints", ckpt_name)
        loaded = _load(node, field, ckpt_name, handles.load, path)
        vision = _load(node, field, ckpt_name, _embedded_vision, path)
        if vision is None:
            raise FileError(f"{node}: {field} {ckpt_name!r}: the checkpoint holds no CLIP vision encoder")
        return UnclipOutputs(loaded.model, loaded.clip, loaded.vae, vision)


def _embedded_vision(path: Path) -> Any:
    from engine.diffusion.clip_vision import embedded_clip_vision

    return embedded_clip_vision(path)


class ImageOnlyOutputs(NamedTuple):
    MODEL: Model
    CLIP_VISION: ClipVision
    VAE: Vae


class ImageOnlyCheckpointLoader(Node):
    """Load an image-conditioned checkpoint (a model, its CLIP vision encoder and VAE, no text encoder).
    ComfyUI uses it for Stable Video Diffusion, which Loom does not run: such a file is reported by name;
    an image-conditioned checkpoint of a family Loom runs (SD2.1 unCLIP) loads."""

    display_name = "Image Only Checkpoint Loader (img2vid model)"
    category = "loaders/video_models"

    def run(
        self, ckpt_name: Annotated[str, Input("The checkpoint file.", choices=checkpoint_files)]
    ) -> ImageOnlyOutputs:
        from engine.diffusion import handles
        from engine.models.files import read_header

        node, field = "ImageOnlyCheckpointLoader", "ckpt_name"
        path = _path(node, field, "checkpoints", ckpt_name)
        if path.suffix.lower() in (".safetensors", ".sft"):
            family = unsupported_image_family(read_header(path).shapes.keys())
            if family is not None:
                raise FileError(
                    f"{node}: {field} {ckpt_name!r}: this is a {family} checkpoint, which Loom does not run"
                )
        vision = _load(node, field, ckpt_name, _embedded_vision, path)
        if vision is None:
            raise FileError(
                f"{node}: {field} {ckpt_name!r}: the checkpoint holds no CLIP vision encoder "
                "(load text-to-image checkpoints with Load Checkpoint)"
            )
        loaded = _load(node, field, ckpt_name, handles.load, path)
        return ImageOnlyOutputs(loaded.model, vision, loaded.vae)


def unsupported_image_family(keys: Any) -> str | None:
    """The name of an image-conditioned family Loom has no model for, recognised by its keys."""
    keys = set(keys)
    if "conditioner.embedders.0.open_clip.model.visual.conv1.weight" in keys or any(
        ".time_stack." in k for k in keys
    ):
        return "Stable Video Diffusion (SVD)"
    if "cc_projection.weight" in keys:
        return "Zero123"
    return None


class StyleModelLoader(Node):
    """Load a T2I-Adapter style model from models/style_models (`style_embedding` layout)."""

    display_name = "Load Style Model"
    category = "loaders"

    def run(
        self,
        style_model_name: Annotated[
            str, Input("The style model file.", choices=lambda: model_files("style_models"))
        ],
    ) -> StyleModel:
        from engine.diffusion.style_model import load_style_model

        node, field = "StyleModelLoader", "style_model_name"
        path = _path(node, field, "style_models", style_model_name)
        return _load(node, field, style_model_name, load_style_model, path)


class GLIGENLoader(Node):
    """Load a GLIGEN text-box model from models/gligen (ComfyUI's pruned layout: `position_net.*` and the
    UNet transformers' `fuser` weights)."""

    display_name = "GLIGENLoader"
    category = "loaders"

    def run(
        self, gligen_name: Annotated[str, Input("The GLIGEN file.", choices=lambda: model_files("gligen"))]
    ) -> GligenModel:
        from engine.diffusion.gligen import load_gligen_file

        path = _path("GLIGENLoader", "gligen_name", "gligen", gligen_name)
        return _load("GLIGENLoader", "gligen_name", gligen_name, load_gligen_file, path)
