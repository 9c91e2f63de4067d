"""ComfyUI's wrapper and callback registries (comfy.patcher_extension) and their ModelPatcher methods.

Registries have ComfyUI's shape, `{kind: {key: [callable, ...]}}`, kept either on a ModelPatcher
(`wrappers`, `callbacks`) or under `transformer_options["wrappers"|"callbacks"]` of a
model_options dict, so packs that build, copy, merge or read them see ComfyUI's data.

What Loom calls: `WrapperExecutor` chains work as in ComfyUI for code that runs them, a
ModelPatcher's ON_CLONE callbacks run in `clone()`, and the sampler calls the kinds in
CALLED_WRAPPERS / CALLED_CALLBACKS where ComfyUI does. Loom calls no other wrapper or callback
kind; registering one logs a warning once per kind (docs/custom-nodes.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Registry = dict[str, dict[Any, list[Callable[..., Any]]]]


class CallbacksMP:
    """Callback kinds, by ComfyUI's names and values."""

    ON_CLONE = "on_clone"
    ON_LOAD = "on_load_after"
    ON_DETACH = "on_detach_after"
    ON_CLEANUP = "on_cleanup"
    ON_PRE_RUN = "on_pre_run"
    ON_PREPARE_STATE = "on_prepare_state"
    ON_APPLY_HOOKS = "on_apply_hooks"
    ON_REGISTER_ALL_HOOK_PATCHES = "on_register_all_hook_patches"
    ON_INJECT_MODEL = "on_inject_model"
    ON_EJECT_MODEL = "on_eject_model"

    @classmethod
    def init_callbacks(cls) -> Registry:
        return {}


class WrappersMP:
    """Wrapper kinds, by ComfyUI's names and values."""

    OUTER_SAMPLE = "outer_sample"
    PREPARE_SAMPLING = "prepare_sampling"
    SAMPLER_SAMPLE = "sampler_sample"
    PREDICT_NOISE = "predict_noise"
    CALC_COND_BATCH = "calc_cond_batch"
    APPLY_MODEL = "apply_model"
    DIFFUSION_MODEL = "diffusion_model"

    @classmethod
    def init_wrappers(cls) -> Registry:
        return {}


# Kinds Loom actually invokes; everything else is stored for packs to read back, not called.
CALLED_CALLBACKS = frozenset({CallbacksMP.ON_CLONE, CallbacksMP.ON_PRE_RUN, CallbacksMP.ON_CLEANUP})
CALLED_WRAPPERS = frozenset(
    {
        WrappersMP.OUTER_SAMPLE,
        WrappersMP.SAMPLER_SAMPLE,
        WrappersMP.PREDICT_NOISE,
        WrappersMP.CALC_COND_BATCH,
        WrappersMP.APPLY_MODEL,
        WrappersMP.DIFFUSION_MODEL,
    }
)
_warned: set[tuple[str, str]] = set()


def warn_not_called(registry: str, kind: str) -> None:
    """Log once per kind that Loom stores but never calls this wrapper/callback kind."""
    called = CALLED_WRAPPERS if registry == "wrappers" else CALLED_CALLBACKS
    if kind in called or (registry, kind) in _warned:
        return
    _warned.add((registry, kind))
    log.warning(
        "a node pack registered a %r %s; Loom stores it but its sampler does not call it "
        "(see docs/custom-nodes.md)",
        kind,
        registry[:-1],
    )


def _options(transformer_options: dict[str, Any], is_model_options: bool, create: bool) -> dict[str, Any]:
    """The transformer_options dict a registry lives in (inside model_options when asked)."""
    if not is_model_options:
        return transformer_options
    if create:
        return transformer_options.setdefault("transformer_options", {})
    return transformer_options.get("transformer_options", {})


def _add(registry: str, kind: str, key: Any, fn: Callable[..., Any], options: dict[str, Any]) -> None:
    options.setdefault(registry, {}).setdefault(kind, {}).setdefault(key, []).append(fn)
    warn_not_called(registry, kind)


def _with_key(registry: str, kind: str, key: Any, options: dict[str, Any]) -> list[Callable[..., Any]]:
    return list(options.get(registry, {}).get(kind, {}).get(key, []))


def _all(registry: str, kind: str, options: dict[str, Any]) -> list[Callable[..., Any]]:
    """Every callable of a kind, in key insertion order then registration order."""
    return [fn for fns in options.get(registry, {}).get(kind, {}).values() for fn in fns]


def add_callback(
    call_type: str,
    callback: Callable[..., Any],
    transformer_options: dict[str, Any],
    is_model_options: bool = False,
) -> None:
    add_callback_with_key(call_type, None, callback, transformer_options, is_model_options)


def add_callback_with_key(
    call_type: str,
    key: Any,
    callback: Callable[..., Any],
    transformer_options: dict[str, Any],
    is_model_options: bool = False,
) -> None:
    _add("callbacks", call_type, key, callback, _options(transformer_options, is_model_options, True))


def get_callbacks_with_key(
    call_type: str, key: Any, transformer_options: dict[str, Any], is_model_options: bool = False
) -> list[Callable[..., Any]]:
    return _with_key("callbacks", call_type, key, _options(transformer_options, is_model_options, False))


def get_all_callbacks(
    call_type: str, transformer_options: dict[str, Any], is_model_options: bool = False
) -> list[Callable[..., Any]]:
    return _all("callbacks", call_type, _options(transformer_options, is_model_options, False))


def add_wrapper(
    wrapper_type: str,
    wrapper: Callable[..., Any],
    transformer_options: dict[str, Any],
    is_model_options: bool = False,
) -> None:
    add_wrapper_with_key(wrapper_type, None, wrapper, transformer_options, is_model_options)


def add_wrapper_with_key(
    wrapper_type: str,
    key: Any,
    wrapper: Callable[..., Any],
    transformer_options: dict[str, Any],
    is_model_options: bool = False,
) -> None:
    _add("wrappers", wrapper_type, key, wrapper, _options(transformer_options, is_model_options, True))


def get_wrappers_with_key(
    wrapper_type: str, key: Any, transformer_options: dict[str, Any], is_model_options: bool = False
) -> list[Callable[..., Any]]:
    return _with_key("wrappers", wrapper_type, key, _options(transformer_options, is_model_options, False))


def get_all_wrappers(
    wrapper_type: str, transformer_options: dict[str, Any], is_model_options: bool = False
) -> list[Callable[..., Any]]:
    return _all("wrappers", wrapper_type, _options(transformer_options, is_model_options, False))


class WrapperExecutor:
    """Runs `wrappers[idx]` with itself as first argument; calling the executor runs the next
    wrapper, and past the last one `original`. `class_obj` is the instance a wrapped method
    belongs to, for wrappers that need it."""

    def __init__(
        self, original: Callable[..., Any], class_obj: Any, wrappers: list[Callable[..., Any]], idx: int
    ):
        self.original = original
        self.class_obj = class_obj
        self.wrappers = list(wrappers)
        self.idx = idx
        self.is_last = idx == len(self.wrappers)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Called by a wrapper: continue with the next wrapper (or the original)."""
        if self.idx + 1 > len(self.wrappers):
            raise RuntimeError("WrapperExecutor called past its last wrapper")
        nxt = type(self)(self.original, self.class_obj, self.wrappers, self.idx + 1)
        return nxt.execute(*args, **kwargs)

    def execute(self, *args: Any, **kwargs: Any) -> Any:
        """Start the chain at this executor's position."""
        if self.is_last:
            return self.original(*args, **kwargs)
        return self.wrappers[self.idx](self, *args, **kwargs)

    @classmethod
    def new_executor(
        cls, original: Callable[..., Any], wrappers: list[Callable[..., Any]], idx: int = 0
    ) -> Any:
        return cls(original, None, wrappers, idx)

    @classmethod
    def new_class_executor(
        cls, original: Callable[..., Any], class_obj: Any, wrappers: list[Callable[..., Any]], idx: int = 0
    ) -> Any:
        return cls(original, class_obj, wrappers, idx)


class PatcherInjection:
    """An inject/eject pair a pack hands to `ModelPatcher.set_injections` (stored, not run by Loom)."""

    def __init__(self, inject: Callable[..., Any], eject: Callable[..., Any]):
        self.inject = inject
        self.eject = eject


def copy_nested_dicts(input_dict: dict[Any, Any]) -> dict[Any, Any]:
    """Copy dicts at every depth and lists one level (their items are shared), as ComfyUI does."""
    out = dict(input_dict)
    for key, value in input_dict.items():
        if isinstance(value, dict):
            out[key] = copy_nested_dicts(value)
        elif isinstance(value, list):
            out[key] = list(value)
    return out


def merge_nested_dicts(
    dict1: dict[Any, Any], dict2: dict[Any, Any], copy_dict1: bool = True
) -> dict[Any, Any]:
    """dict2 merged into (a copy of) dict1: nested dicts merge, lists extend, other values replace.

    Like ComfyUI, a nested merge puts dict2's entries first and dict1's after them."""
    merged = copy_nested_dicts(dict1) if copy_dict1 else dict1
    for key, value in dict2.items():
        if isinstance(value, dict):
            merged[key] = merge_nested_dicts(value, merged.setdefault(key, {}))
        elif isinstance(value, list):
            merged.setdefault(key, []).extend(value)
        else:
            merged[key] = value
    return merged


class PatcherExtensions:
    """ModelPatcher methods for its own `wrappers`, `callbacks`, `injections`, `additional_models`."""

    wrappers: Registry
    callbacks: Registry
    injections: dict[str, list[PatcherInjection]]
    additional_models: dict[str, list[Any]]

    def _init_extensions(self) -> None:
        self.wrappers = WrappersMP.init_wrappers()
        self.callbacks = CallbacksMP.init_callbacks()
        self.injections = {}
        self.additional_models = {}

    def _copy_extensions_to(self, n: PatcherExtensions) -> None:
        n.wrappers = {k: {k1: list(v1) for k1, v1 in v.items()} for k, v in self.wrappers.items()}
        n.callbacks = {k: {k1: list(v1) for k1, v1 in v.items()} for k, v in self.callbacks.items()}
        n.injections = {k: list(v) for k, v in self.injections.items()}
        n.additional_models = {k: [m.clone() for m in v] for k, v in self.additional_models.items()}
        for callback in self.get_all_callbacks(CallbacksMP.ON_CLONE):
            callback(self, n)

    def add_callback(self, call_type: str, callback: Callable[..., Any]) -> None:
        self.add_callback_with_key(call_type, None, callback)

    def add_callback_with_key(self, call_type: str, key: Any, callback: Callable[..., Any]) -> None:
        _add("callbacks", call_type, key, callback, {"callbacks": self.callbacks})

    def remove_callbacks_with_key(self, call_type: str, key: Any) -> None:
        self.callbacks.get(call_type, {}).pop(key, None)

    def get_callbacks(self, call_type: str, key: Any) -> list[Callable[..., Any]]:
        return self.callbacks.get(call_type, {}).get(key, [])

    def get_all_callbacks(self, call_type: str) -> list[Callable[..., Any]]:
        return _all("callbacks", call_type, {"callbacks": self.callbacks})

    def pre_run(self) -> None:
        """Called by the sampler once the model is ready, before sampling (ComfyUI's ON_PRE_RUN)."""
        for callback in self.get_all_callbacks(CallbacksMP.ON_PRE_RUN):
            callback(self)

    def cleanup(self) -> None:
        """Called by the sampler after sampling, also when it failed (ComfyUI's ON_CLEANUP)."""
        for callback in self.get_all_callbacks(CallbacksMP.ON_CLEANUP):
            callback(self)

    def add_wrapper(self, wrapper_type: str, wrapper: Callable[..., Any]) -> None:
        self.add_wrapper_with_key(wrapper_type, None, wrapper)

    def add_wrapper_with_key(self, wrapper_type: str, key: Any, wrapper: Callable[..., Any]) -> None:
        _add("wrappers", wrapper_type, key, wrapper, {"wrappers": self.wrappers})

    def remove_wrappers_with_key(self, wrapper_type: str, key: Any) -> None:
        self.wrappers.get(wrapper_type, {}).pop(key, None)

    def get_wrappers(self, wrapper_type: str, key: Any) -> list[Callable[..., Any]]:
        return self.wrappers.get(wrapper_type, {}).get(key, [])

    def get_all_wrappers(self, wrapper_type: str) -> list[Callable[..., Any]]:
        return _all("wrappers", wrapper_type, {"wrappers": self.wrappers})

    def set_injections(self, key: str, injections: list[PatcherInjection]) -> None:
        self.injections[key] = injections
        warn_not_called("callbacks", "injections")

    def remove_injections(self, key: str) -> None:
        self.injections.pop(key, None)

    def get_injections(self, key: str) -> list[PatcherInjection] | None:
        return self.injections.get(key)

    def set_additional_models(self, key: str, models: list[Any]) -> None:
        self.additional_models[key] = models

    def remove_additional_models(self, key: str) -> None:
        self.additional_models.pop(key, None)

    def get_additional_models_with_key(self, key: str) -> list[Any]:
        return self.additional_models.get(key, [])
