"""MODEL: ComfyUI's ModelPatcher over Loom's diffusers UNet — the one patch mechanism.

A ModelPatcher shares its `model` (a `DiffusionModel`: the UNet, its sampling and latent format)
with every clone and carries what nodes add: `model_options` (cfg functions, wrappers, transformer
patches keyed by ComfyUI block ids), weight patches in ComfyUI's format keyed by ComfyUI's state-dict
names, and object patches. Nothing is applied to the shared modules until sampling, inside
`patch_model()`/`unpatch_model()` (or the `applied()` context), which restores them afterwards.
Core nodes (LoRA loaders, KSampler) and node packs use this same object.
"""

from __future__ import annotations

import copy
import inspect
import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from engine.diffusion.model_options import (
    set_model_options_patch_replace,
    set_model_options_post_cfg_function,
    set_model_options_pre_cfg_function,
)
from engine.diffusion.patcher_extension import PatcherExtensions

if TYPE_CHECKING:
    from engine.diffusion.diffusion_model import DiffusionModel

# torch and the weight code load on first use, so that importing the node library stays light.


# transformer_options["patches"] names that Loom's UNet calls (engine.diffusion.unet_hooks).
CALLED_PATCHES = frozenset(
    {
        "attn1_patch",
        "attn2_patch",
        "attn1_output_patch",
        "attn2_output_patch",
        "middle_patch",
        "input_block_patch",
        "output_block_patch",
        # after each DiT block, for the families in dit_patches.AFTER_BLOCK_FAMILIES and Z-Image
        "double_block",
        "noise_refiner",  # after each of Z-Image's noise-refiner layers
        "post_input",  # on Flux's embedded inputs (dit_patches.post_input_patches)
    }
)


class ModelPatcher(PatcherExtensions):
    """ComfyUI's ModelPatcher API on a `DiffusionModel` (see docs/custom-nodes.md for what is covered)."""

    def __init__(
        self,
        model: DiffusionModel,
        load_device: Any = None,
        offload_device: Any = None,
        size: int = 0,
        weight_inplace_update: bool = False,
    ) -> None:
        self.model = model
        self.load_device = load_device if load_device is not None else _load_device()
        self.offload_device = offload_device if offload_device is not None else _cpu()
        self.size = size
        self.weight_inplace_update = weight_inplace_update
        self.patches: dict[str, list[tuple[Any, ...]]] = {}
        self.object_patches: dict[str, Any] = {}
        self.object_patches_backup: dict[str, Any] = {}
        self.model_options: dict[str, Any] = {"transformer_options": {}}
        self.patches_uuid = uuid.uuid4()
        self.parent: ModelPatcher | None = None
        self.attachments: dict[str, Any] = {}
        self._backup: list[tuple[Any, Any]] = []
        self._init_extensions()

    # Loom's own names, kept for the code that predates the ModelPatcher.
    @property
    def unet(self) -> Any:
        return self.model.diffusion_model

    @property
    def sampling(self) -> Any:
        return self.get_model_object("model_sampling")

    @property
    def family(self) -> str:
        return self.model.family

    @property
    def latent(self) -> Any:
        return self.model.latent_format

    def clone(self) -> ModelPatcher:
        n = self.__class__(
            self.model, self.load_device, self.offload_device, self.size, self.weight_inplace_update
        )
        n.patches = {k: list(v) for k, v in self.patches.items()}
        n.patches_uuid = self.patches_uuid
        n.object_patches = dict(self.object_patches)
        n.model_options = copy.deepcopy(self.model_options)
        n.parent = self
        n.attachments = dict(self.attachments)
        self._copy_extensions_to(n)
        return n

    def is_clone(self, other: Any) -> bool:
        return getattr(other, "model", None) is self.model

    def clone_has_same_weights(self, clone: Any) -> bool:
        if not self.is_clone(clone):
            return False
        return (not self.patches and not clone.patches) or self.patches_uuid == clone.patches_uuid

    def model_size(self) -> int:
        if self.size <= 0:
            self.size = sum(t.numel() * t.element_size() for t in self.unet.state_dict().values())
        return self.size

    def loaded_size(self) -> int:
        return self.model_size() if self.current_loaded_device() != _cpu() else 0

    def current_loaded_device(self) -> Any:
        return next(self.unet.parameters()).device

    def memory_required(self, input_shape: Any) -> int:
        return self.model.memory_required(input_shape)

    def model_dtype(self) -> Any:
        return self.model.get_dtype()

    # model_options: guidance functions and wrappers
    def set_model_sampler_cfg_function(
        self, sampler_cfg_function: Any, disable_cfg1_optimization: bool = False
    ) -> None:
        if len(inspect.signature(sampler_cfg_function).parameters) == 3:
            old = sampler_cfg_function
            self.model_options["sampler_cfg_function"] = lambda args: old(
                args["cond"], args["uncond"], args["cond_scale"]
            )
        else:
            self.model_options["sampler_cfg_function"] = sampler_cfg_function
        if disable_cfg1_optimization:
            self.model_options["disable_cfg1_optimization"] = True

    def set_model_sampler_post_cfg_function(
        self, post_cfg_function: Any, disable_cfg1_optimization: bool = False
    ) -> None:
        set_model_options_post_cfg_function(self.model_options, post_cfg_function, disable_cfg1_optimization)

    def set_model_sampler_pre_cfg_function(
        self, pre_cfg_function: Any, disable_cfg1_optimization: bool = False
    ) -> None:
        set_model_options_pre_cfg_function(self.model_options, pre_cfg_function, disable_cfg1_optimization)

    def set_model_sampler_calc_cond_batch_function(self, function: Any) -> None:
        self.model_options["sampler_calc_cond_batch_function"] = function

    def set_model_unet_function_wrapper(self, unet_wrapper_function: Any) -> None:
        self.model_options["model_function_wrapper"] = unet_wrapper_function

    def set_model_denoise_mask_function(self, denoise_mask_function: Any) -> None:
        self.model_options["denoise_mask_function"] = denoise_mask_function

    # transformer_options: patches at ComfyUI's call points in the UNet (engine.diffusion.unet_hooks)
    def set_model_patch(self, patch: Any, name: str) -> None:
        if name not in CALLED_PATCHES:
            logging.warning(
                "ModelPatcher: Loom's UNet (diffusers') has no call point for %r patches; this one will "
                "not run (supported: %s)",
                name,
                ", ".join(sorted(CALLED_PATCHES)),
            )
        to = self.model_options["transformer_options"]
        patches = to.setdefault("patches", {})
        patches[name] = [*patches.get(name, []), patch]

    def set_model_patch_replace(
        self, patch: Any, name: str, block_name: str, number: int, transformer_index: int | None = None
    ) -> None:
        set_model_options_patch_replace(
            self.model_options, patch, name, block_name, number, transformer_index
        )

    def set_model_attn1_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_patch")

    def set_model_attn2_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_patch")

    def set_model_attn1_replace(
        self, patch: Any, block_name: str, number: int, transformer_index: int | None = None
    ) -> None:
        self.set_model_patch_replace(patch, "attn1", block_name, number, transformer_index)

    def set_model_attn2_replace(
        self, patch: Any, block_name: str, number: int, transformer_index: int | None = None
    ) -> None:
        self.set_model_patch_replace(patch, "attn2", block_name, number, transformer_index)

    def set_model_attn1_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn1_output_patch")

    def set_model_attn2_output_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "attn2_output_patch")

    def set_model_input_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "input_block_patch")

    def set_model_output_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "output_block_patch")

    def set_model_double_block_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "double_block")

    def set_model_noise_refiner_patch(self, patch: Any) -> None:
        self.set_model_patch(patch, "noise_refiner")

    def set_model_post_input_patch(self, patch: Any) -> None:
        """A patch Flux runs on its embedded inputs (engine.diffusion.dit_patches, "post_input")."""
        self.set_model_patch(patch, "post_input")

    def model_patches_to(self, device: Any) -> None:
        """Move patch objects that hold tensors (those with a `.to`) to `device`, as ComfyUI does."""
        to = self.model_options["transformer_options"]
        for name, patch_list in to.get("patches", {}).items():
            to["patches"][name] = [p.to(device) if hasattr(p, "to") else p for p in patch_list]
        for table in to.get("patches_replace", {}).values():
            for block, p in table.items():
                table[block] = p.to(device) if hasattr(p, "to") else p
        wrapper = self.model_options.get("model_function_wrapper")
        if hasattr(wrapper, "to"):
            self.model_options["model_function_wrapper"] = wrapper.to(device)  # type: ignore[union-attr]

    def model_patches_models(self) -> list[Any]:
        return []

    # object patches
    def add_object_patch(self, name: str, obj: Any) -> None:
        self.object_patches[name] = obj

    def get_model_object(self, name: str) -> Any:
        if name in self.object_patches:
            return self.object_patches[name]
        if name in self.object_patches_backup:
            return self.object_patches_backup[name]
        return _get_attr(self.model, name)

    # weight patches
    def add_patches(
        self, patches: dict[Any, Any], strength_patch: float = 1.0, strength_model: float = 1.0
    ) -> list[Any]:
        """Add weight patches keyed by ComfyUI state-dict names (or `(name, offset[, function])`);
        returns the keys that name a weight of this model."""
        from engine.diffusion.weights import comfy_names

        known = comfy_names(self.unet)
        added = []
        for k in patches:
            key, offset, function = (
                (k, None, None) if isinstance(k, str) else (k[0], k[1], k[2] if len(k) > 2 else None)
            )
            if key in known:
                added.append(k)
                self.patches.setdefault(key, []).append(
                    (strength_patch, patches[k], strength_model, offset, function)
                )
        self.patches_uuid = uuid.uuid4()
        return added

    def get_key_patches(self, filter_prefix: str | None = None) -> dict[str, list[Any]]:
        identity: Callable[..., Any] = lambda a, **kwargs: a  # noqa: E731
        out: dict[str, list[Any]] = {}
        for key, weight in self.model_state_dict(filter_prefix).items():
            out[key] = [(weight, identity), *self.patches.get(key, [])]
        return out

    def model_state_dict(self, filter_prefix: str | None = None) -> dict[str, Any]:
        state = self.model.state_dict()
        if filter_prefix is None:
            return state
        return {k: v for k, v in state.items() if k.startswith(filter_prefix)}

    def calculate_weight(
        self, patches: list[Any], weight: Any, key: str, intermediate_dtype: Any = None
    ) -> Any:
        import torch

        from engine.diffusion.weights import calculate_weight

        work = weight.to(intermediate_dtype or torch.float32)
        return calculate_weight(patches, work, key).to(weight.dtype)

    def patch_model(
        self,
        device_to: Any = None,
        lowvram_model_memory: int = 0,
        load_weights: bool = True,
        force_patch_weights: bool = False,
    ) -> Any:
        """Apply object and weight patches to the shared modules (undo with `unpatch_model`)."""
        if self._backup:
            return self.model
        for name, obj in self.object_patches.items():
            self.object_patches_backup[name] = _get_attr(self.model, name)
            _set_attr(self.model, name, obj)
        if device_to is not None:
            self.unet.to(device_to)
        from engine.diffusion.weights import patched_weights

        context = patched_weights(self.unet, self.patches) if load_weights else None
        if context is not None:
            context.__enter__()
            self._backup.append((context, None))
        return self.model

    def unpatch_model(self, device_to: Any = None, unpatch_weights: bool = True) -> None:
        while self._backup:
            context, _ = self._backup.pop()
            context.__exit__(None, None, None)
        for name, obj in self.object_patches_backup.items():
            _set_attr(self.model, name, obj)
        self.object_patches_backup = {}
        if device_to is not None:
            self.unet.to(device_to)

    @contextmanager
    def applied(self) -> Iterator[DiffusionModel]:
        """The model with this patcher's patches in place for the duration of the block."""
        self.model.current_patcher = self
        self.patch_model()
        try:
            yield self.model
        finally:
            self.unpatch_model()

    def set_attachments(self, key: str, attachment: Any) -> None:
        self.attachments[key] = attachment

    def get_attachment(self, key: str) -> Any:
        return self.attachments.get(key)

    def remove_attachments(self, key: str) -> None:
        self.attachments.pop(key, None)

    def __repr__(self) -> str:
        return f"ModelPatcher({self.family}, {len(self.patches)} weight patches)"


def _cpu() -> Any:
    import torch

    return torch.device("cpu")


def _load_device() -> Any:
    from engine.diffusion.devices import manager

    return manager().device


def _get_attr(obj: Any, name: str) -> Any:
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _set_attr(obj: Any, name: str, value: Any) -> None:
    *path, last = name.split(".")
    for part in path:
        obj = getattr(obj, part)
    setattr(obj, last, value)
