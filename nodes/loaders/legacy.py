"""ComfyUI's older loaders: CheckpointLoader (with a config file), DiffusersLoader (diffusers folders) and
HypernetworkLoader (A1111 hypernetworks as attention patches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from engine import folders
from engine.diffusion import handles
from engine.native import Input, Model, Node
from nodes.loaders.checkpoints import CheckpointOutputs, checkpoint_files, model_files

# The configs ComfyUI ships in its models/configs, named by workflows that use CheckpointLoader; they
# stay valid choices here although Loom has (and needs) no such files.
COMFY_CONFIGS = (
    "anything_v3.yaml",
    "v1-inference.yaml",
    "v1-inference_clip_skip_2.yaml",
    "v1-inference_clip_skip_2_fp16.yaml",
    "v1-inference_fp16.yaml",
    "v1-inpainting-inference.yaml",
    "v2-inference-v.yaml",
    "v2-inference-v_fp32.yaml",
    "v2-inference.yaml",
    "v2-inference_fp32.yaml",
    "v2-inpainting-inference.yaml",
)


def config_files() -> list[str]:
    """ComfyUI's shipped config names and the .yaml files in models/configs."""
    own = [name for name in folders.current().model_files("configs") if name.lower().endswith(".yaml")]
    return sorted({*COMFY_CONFIGS, *own})


def hypernetwork_files() -> list[str]:
    return model_files("hypernetworks")


def diffusers_folders() -> list[str]:
    """Folders under models/diffusers that hold a diffusers pipeline (a model_index.json), relative."""
    found: set[str] = set()
    for root in folders.current().models.get("diffusers", []):
        if root.is_dir():
            found.update(p.parent.relative_to(root).as_posix() for p in root.rglob("model_index.json"))
    return sorted(found)


def diffusers_path(name: str) -> Path:
    for root in folders.current().models.get("diffusers", []):
        path = folders.safe_join(root, name)
        if (path / "model_index.json").is_file():
            return path
    raise FileNotFoundError(
        f"DiffusersLoader: no diffusers folder {name!r} (with a model_index.json) in models/diffusers"
    )


class CheckpointLoader(Node):
    """Load a checkpoint as CheckpointLoaderSimple does. The config file is accepted and ignored: Loom
    reads the architecture (SD1.x, SD2.x v-prediction or not, SDXL) from the checkpoint's weights and
    metadata, which is what the old configs described."""

    display_name = "Load Checkpoint With Config (DEPRECATED)"
    category = "advanced/loaders"
    deprecated = True

    def run(
        self,
        config_name: Annotated[
            str, Input("A model config from models/configs (ignored).", choices=config_files)
        ],
        ckpt_name: Annotated[str, Input("The checkpoint file.", choices=checkpoint_files)],
    ) -> CheckpointOutputs:
        loaded = handles.load(folders.current().model_path("checkpoints", ckpt_name))
        return CheckpointOutputs(loaded.model, loaded.clip, loaded.vae)


class DiffusersLoader(Node):
    """Load a Stable Diffusion pipeline saved in the diffusers format (a folder with model_index.json,
    unet/, vae/, text_encoder/...) from models/diffusers."""

    category = "advanced/loaders/deprecated"

    def run(
        self, model_path: Annotated[str, Input("The diffusers folder.", choices=diffusers_folders)]
    ) -> CheckpointOutputs:
        loaded = handles.load(diffusers_path(model_path))
        return CheckpointOutputs(loaded.model, loaded.clip, loaded.vae)


class HypernetworkLoader(Node):
    """Apply an A1111 hypernetwork from models/hypernetworks: small networks that change the keys and
    values of the attention layers (as attn1 and attn2 patches)."""

    category = "loaders"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        hypernetwork_name: Annotated[str, Input("The hypernetwork file.", choices=hypernetwork_files)],
        strength: Annotated[
            float,
            Input("How strongly it applies; 0 leaves the model as it is.", min=-10.0, max=10.0, step=0.01),
        ] = 1.0,
    ) -> Model:
        from engine.diffusion.hypernetwork import HypernetworkError, load_hypernetwork_patch

        path = folders.current().model_path("hypernetworks", hypernetwork_name)
        try:
            patch = load_hypernetwork_patch(path, strength)
        except HypernetworkError as exc:
            raise ValueError(f"HypernetworkLoader: hypernetwork_name: {exc}") from exc
        patched = model.clone()
        patched.set_model_attn1_patch(patch)
        patched.set_model_attn2_patch(patch)
        return patched
