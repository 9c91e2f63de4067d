"""ComfyUI's older loaders: CheckpointLoader (with a config file), DiffusersLoader (diffusers folders) and
HypernetworkLoader (A1111 hypernetworks as attention patches)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from engine import folders
from engine.diffusion import handles
from engine.native import Input, Model, Node
from nodes.loaders.checkpoints import CheckpointOutputs, checkpoint_files, model_files

# The configs ComfyUI ships in its models/configs, named by workflows that use CheckpointLoader, with
# what ComfyUI takes from each (the model's parameterization, the CLIP layer): they stay valid choices
# with the same effect although Loom has no such files.
COMFY_CONFIGS: dict[str, dict[str, Any]] = {
    "anything_v3.yaml": {"layer_idx": -2},
    "v1-inference.yaml": {},
    "v1-inference_clip_skip_2.yaml": {"layer_idx": -2},
    "v1-inference_clip_skip_2_fp16.yaml": {"layer_idx": -2},
    "v1-inference_fp16.yaml": {},
    "v1-inpainting-inference.yaml": {},
    "v2-inference-v.yaml": {"parameterization": "v"},
    "v2-inference-v_fp32.yaml": {"parameterization": "v"},
    "v2-inference.yaml": {},
    "v2-inference_fp32.yaml": {},
    "v2-inpainting-inference.yaml": {},
}


def config_effects(name: str) -> dict[str, Any]:
    """What ComfyUI's loader reads from a config: `model.params.parameterization` ("v": v-prediction)
    and `model.params.cond_stage_config.params.layer_idx` (the CLIP layer). A file in models/configs
    is read; ComfyUI's shipped names are known without one."""
    path = next(
        (root / name for root in folders.current().models.get("configs", []) if (root / name).is_file()),
        None,
    )
    if path is None:
        return COMFY_CONFIGS.get(name, {})
    import yaml

    try:
        params = (yaml.safe_load(path.read_text()) or {}).get("model", {}).get("params", {})
        clip = (params.get("cond_stage_config") or {}).get("params") or {}
    except (yaml.YAMLError, AttributeError, OSError) as exc:
        raise ValueError(f"CheckpointLoader: config_name {name!r} is not a model config: {exc}") from exc
    effects = {"parameterization": params.get("parameterization"), "layer_idx": clip.get("layer_idx")}
    return {key: value for key, value in effects.items() if value is not None}


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
    """Load a checkpoint as CheckpointLoaderSimple does, then apply what ComfyUI takes from the config:
    v-prediction (`parameterization: v`) and the CLIP layer (`layer_idx`, e.g. -2 in the clip-skip-2
    configs). The architecture itself comes from the checkpoint's weights, as in CheckpointLoaderSimple."""

    display_name = "Load Checkpoint With Config (DEPRECATED)"
    category = "advanced/loaders"
    deprecated = True

    def run(
        self,
        config_name: Annotated[
            str, Input("A model config (models/configs or one ComfyUI ships).", choices=config_files)
        ],
        ckpt_name: Annotated[str, Input("The checkpoint file.", choices=checkpoint_files)],
    ) -> CheckpointOutputs:
        effects = config_effects(config_name)
        loaded = handles.load(folders.current().model_path("checkpoints", ckpt_name))
        model, clip = loaded.model, loaded.clip
        if effects.get("parameterization") == "v":
            from nodes.model_patches.model_sampling_discrete import discrete_sampling

            v_prediction = discrete_sampling(model.model.model_sampling, "v_prediction", False)
            model = model.clone()
            model.add_object_patch("model_sampling", v_prediction)
        if effects.get("layer_idx") is not None and clip is not None:
            clip = clip.clone()
            clip.clip_layer(int(effects["layer_idx"]))
        return CheckpointOutputs(model, clip, loaded.vae)


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
