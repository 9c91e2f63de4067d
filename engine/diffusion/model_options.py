"""ComfyUI's functions on a `model_options` dict (comfy.model_patcher's module-level helpers): register a
block replacement or a pre-/post-cfg function on options that clones may share (copying what they change),
and clone options as ComfyUI does (nested dicts and lists copied, the patch callables shared). The
ModelPatcher's setters (engine.diffusion.model_patcher) use them on its own options.
"""

from __future__ import annotations

from typing import Any


def set_model_options_patch_replace(
    model_options: dict[str, Any],
    patch: Any,
    name: str,
    block_name: str,
    number: int,
    transformer_index: int | None = None,
) -> dict[str, Any]:
    """Register `patch` to replace `name` ("attn1"/"attn2") at one block, copying the dicts it changes
    so that clones sharing them are not affected."""
    to = dict(model_options["transformer_options"])
    replace = dict(to.get("patches_replace", {}))
    table = dict(replace.get(name, {}))
    block = (block_name, number) if transformer_index is None else (block_name, number, transformer_index)
    table[block] = patch
    replace[name] = table
    to["patches_replace"] = replace
    model_options["transformer_options"] = to
    return model_options


def set_model_options_post_cfg_function(
    model_options: dict[str, Any], post_cfg_function: Any, disable_cfg1_optimization: bool = False
) -> dict[str, Any]:
    model_options["sampler_post_cfg_function"] = [
        *model_options.get("sampler_post_cfg_function", []),
        post_cfg_function,
    ]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def set_model_options_pre_cfg_function(
    model_options: dict[str, Any], pre_cfg_function: Any, disable_cfg1_optimization: bool = False
) -> dict[str, Any]:
    model_options["sampler_pre_cfg_function"] = [
        *model_options.get("sampler_pre_cfg_function", []),
        pre_cfg_function,
    ]
    if disable_cfg1_optimization:
        model_options["disable_cfg1_optimization"] = True
    return model_options


def create_model_options_clone(model_options: dict[str, Any]) -> dict[str, Any]:
    """Copy the nested dicts and lists of model_options; the patch callables themselves are shared."""
    return _copy_nested(model_options)


def _copy_nested(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy_nested(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_nested(v) for v in value]
    return value
