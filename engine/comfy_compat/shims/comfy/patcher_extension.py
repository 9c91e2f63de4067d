"""ComfyUI's comfy.patcher_extension: wrapper/callback registries (engine.diffusion.patcher_extension).

Loom stores every kind with ComfyUI's layout and runs WrapperExecutor chains and ON_CLONE callbacks;
its sampler calls no other kind (docs/custom-nodes.md lists them).
"""

from engine.diffusion.patcher_extension import (
    CallbacksMP,
    PatcherInjection,
    WrapperExecutor,
    WrappersMP,
    add_callback,
    add_callback_with_key,
    add_wrapper,
    add_wrapper_with_key,
    copy_nested_dicts,
    get_all_callbacks,
    get_all_wrappers,
    get_callbacks_with_key,
    get_wrappers_with_key,
    merge_nested_dicts,
)

__all__ = [
    "CallbacksMP",
    "PatcherInjection",
    "WrapperExecutor",
    "WrappersMP",
    "add_callback",
    "add_callback_with_key",
    "add_wrapper",
    "add_wrapper_with_key",
    "copy_nested_dicts",
    "get_all_callbacks",
    "get_all_wrappers",
    "get_callbacks_with_key",
    "get_wrappers_with_key",
    "merge_nested_dicts",
]
