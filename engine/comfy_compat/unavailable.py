"""Names of ComfyUI classes that cannot exist on Loom's models: ComfyUI's own `comfy.ldm` networks
(openaimodel.UNetModel, ResBlock, the LDM AutoencoderKL, ...). Loom's networks are diffusers and
transformers modules, so these classes exist only so that modules naming them import: `isinstance`
answers False for everything Loom builds, a pack may subclass them, and constructing one (or calling
its `forward`) raises an error naming the ComfyUI class Loom does not provide.
"""

from __future__ import annotations

from typing import Any

import torch


class NotProvidedError(NotImplementedError):
    """A pack built or ran a ComfyUI network class Loom does not have."""


def _refuse(cls: type, action: str) -> NotProvidedError:
    origin = getattr(cls, "comfy_origin", cls.__qualname__)
    return NotProvidedError(
        f"{action} {origin}: Loom does not provide ComfyUI's comfy.ldm network classes; its models are "
        "diffusers/transformers modules (see docs/custom-nodes.md, 'What packs can import')"
    )


class NotProvided(torch.nn.Module):
    """Base of the placeholders: subclassable, never constructible."""

    comfy_origin = "this ComfyUI class"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise _refuse(type(self), "constructing")

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise _refuse(type(self), "running")


def not_provided(module: str, name: str) -> type[NotProvided]:
    """A placeholder class named as ComfyUI's `module.name`."""
    return type(name, (NotProvided,), {"__module__": module, "comfy_origin": f"{module}.{name}"})
