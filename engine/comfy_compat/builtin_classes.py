"""Loom's built-in nodes as ComfyUI's classes, for packs that import them from `nodes` or
`comfy_extras.nodes_*` and call or subclass them the ComfyUI way:

    nodes.CLIPTextEncode().encode(clip, text)           # ComfyUI's FUNCTION, ComfyUI's argument order
    nodes.NODE_CLASS_MAPPINGS["KSampler"]().sample(...)
    class MySave(nodes.SaveImage): ...                  # output_dir, type, prefix_append, save_images()

Each class is derived from the built-in node's NodeSpec (INPUT_TYPES, RETURN_TYPES, CATEGORY...) and
its FUNCTION calls the same node code Loom's executor runs, with the running node's context (or a
quiet one outside any prompt). SaveImage and PreviewImage are written out, because packs subclass
them and change their attributes.
"""

from __future__ import annotations

import random
import string
import threading
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine import folders
from engine.comfy_compat.function_names import COMFY_FUNCTIONS, COMFY_MODULE_OF
from engine.context import Context, current_context
from engine.settle import settled
from engine.spec import NodeSpec


def node_context(node_id: str) -> Context:
    """The running node's context, or a quiet one (no events, never interrupted) outside a prompt."""
    running = current_context.get()
    if running is not None:
        return running
    return Context(
        node_id=node_id, prompt_id="", emit=lambda event, data: None, interrupt_flag=threading.Event()
    )


def comfy_class(spec: NodeSpec) -> type:
    """A ComfyUI-convention class that runs the built-in node `spec`."""
    if not spec.native:
        return spec.cls  # already written in ComfyUI's convention
    declared = tuple(i.name for i in spec.inputs if i.section != "hidden")
    function, params = COMFY_FUNCTIONS.get(spec.id, ("execute", declared))

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if len(args) > len(params):
            raise TypeError(f"{spec.id}.{function}() takes {len(params)} arguments, {len(args)} given")
        kwargs.update(zip(params, args, strict=False))
        values = {name: value for name, value in kwargs.items() if spec.input(name) is not None}
        return settled(spec.invoke(spec.cls(), values, node_context(spec.id)))

    call.__name__ = function

    def input_types(cls: type) -> dict[str, dict[str, tuple[Any, ...]]]:
        sections: dict[str, dict[str, tuple[Any, ...]]] = {"required": {}}
        for item in spec.inputs:
            sections.setdefault(item.section, {})[item.name] = tuple(item.object_info())
        return sections

    return type(
        spec.id,
        (),
        {
            **choice_attributes(spec),
            "__module__": COMFY_MODULE_OF.get(spec.id, "nodes"),
            "__doc__": spec.description,
            "INPUT_TYPES": classmethod(input_types),
            "RETURN_TYPES": tuple(o.type for o in spec.outputs),
            "RETURN_NAMES": tuple(o.name for o in spec.outputs),
            "OUTPUT_IS_LIST": tuple(o.is_list for o in spec.outputs),
            "OUTPUT_NODE": spec.output_node,
            "FUNCTION": function,
            "CATEGORY": spec.category,
            "DESCRIPTION": spec.description,
            function: call,
        },
    )


# ComfyUI's built-in classes publish some combo lists as class attributes (ImageScale.upscale_methods,
# LatentUpscale.crop_methods...) that packs read to build their own inputs: input name -> attribute.
CHOICE_ATTRIBUTES = {"upscale_method": "upscale_methods", "crop": "crop_methods"}


def choice_attributes(spec: NodeSpec) -> dict[str, list[Any]]:
    """The class attributes holding the choices of `spec`'s combo inputs, from Loom's own lists."""
    return {
        CHOICE_ATTRIBUTES[item.name]: list(item.choices())
        for item in spec.inputs
        if item.name in CHOICE_ATTRIBUTES and item.choices is not None
    }


class SaveImage:
    """ComfyUI's SaveImage: packs subclass it and change `output_dir`, `type`, `prefix_append` or
    `compress_level`, or call `save_images()` themselves."""

    def __init__(self) -> None:
        self.output_dir = str(folders.current().output)
        self.type = "output"
        self.prefix_append = ""
        self.compress_level = 4

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {
                "images": ("IMAGE", {"tooltip": "The images to save."}),
                "filename_prefix": (
                    "STRING",
                    {"default": "ComfyUI", "tooltip": "The prefix for the file to save."},
                ),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    RETURN_TYPES: tuple[str, ...] = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    CATEGORY = "image"
    DESCRIPTION = "Saves the input images to your output directory."

    def save_images(
        self, images: Any, filename_prefix: str = "ComfyUI", prompt: Any = None, extra_pnginfo: Any = None
    ) -> dict[str, Any]:
        from nodes.image.io import save_images

        metadata = SimpleNamespace(prompt=prompt or {}, extra_pnginfo=extra_pnginfo or {})
        prefix = filename_prefix + self.prefix_append
        saved = save_images(images, Path(self.output_dir), prefix, self.type, metadata, self.compress_level)  # type: ignore[arg-type]
        return {"ui": {"images": saved}}


class PreviewImage(SaveImage):
    """ComfyUI's PreviewImage: SaveImage into the temp folder under a random prefix."""

    def __init__(self) -> None:
        super().__init__()
        self.output_dir = str(folders.current().temp)
        self.type = "temp"
        self.prefix_append = "_temp_" + "".join(random.choice(string.ascii_lowercase) for _ in range(5))
        self.compress_level = 1

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, Any]:
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }


WRITTEN_OUT: dict[str, type] = {"SaveImage": SaveImage, "PreviewImage": PreviewImage}


@cache
def builtin_classes() -> dict[str, type]:
    """Node id -> ComfyUI-convention class, for every built-in node."""
    from nodes import builtin_registry

    return {spec.id: WRITTEN_OUT.get(spec.id) or comfy_class(spec) for spec in builtin_registry()}


@cache
def builtin_display_names() -> dict[str, str]:
    from nodes import builtin_registry

    return {spec.id: spec.display_name for spec in builtin_registry()}


def module_classes(module: str) -> dict[str, type]:
    """The built-in classes ComfyUI defines in `module` (e.g. `comfy_extras.nodes_mask`) that Loom has."""
    return {
        node_id: cls for node_id, cls in builtin_classes().items() if COMFY_MODULE_OF.get(node_id) == module
    }


def common_ksampler(
    model: Any, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str, positive: Any,
    negative: Any, latent: dict[str, Any], denoise: float = 1.0, disable_noise: bool = False,
    start_step: int | None = None, last_step: int | None = None, force_full_denoise: bool = False,
) -> tuple[dict[str, Any]]:  # fmt: skip
    """ComfyUI's `nodes.common_ksampler`: what KSampler and KSamplerAdvanced run, on Loom's sampler."""
    from engine.diffusion.ksampler import SamplerSettings, run_ksampler

    settings = SamplerSettings(
        seed, steps, cfg, sampler_name, scheduler, denoise=denoise, add_noise=not disable_noise,
        start_step=start_step, last_step=last_step, force_full_denoise=force_full_denoise,
    )  # fmt: skip
    return (run_ksampler(node_context("KSampler"), model, positive, negative, latent, settings),)


def interrupt_processing(value: bool = True) -> None:
    """Ask the running prompt to stop at its next check (ComfyUI's `nodes.interrupt_processing`)."""
    running = current_context.get()
    if running is not None:
        if value:
            running.interrupt_flag.set()
        else:
            running.interrupt_flag.clear()


def before_node_execution() -> None:
    """Raise if the running prompt was interrupted."""
    running = current_context.get()
    if running is not None:
        running.check_interrupt()
