"""Saving latents to the output folder and loading them from the input folder (ComfyUI's .latent files:
safetensors with "latent_tensor", plus the prompt and workflow as metadata)."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from engine import folders
from engine.context import Context
from engine.folders import safe_join
from engine.native import Input, Latent, Node, Ui
from nodes.image.io import SAVE_HIDDEN, output_slot

# Files written before ComfyUI added this marker hold latents scaled by SD1's factor 0.18215.
FORMAT_MARKER = "latent_format_version_0"
OLD_FORMAT_SCALE = 1.0 / 0.18215


class SaveLatent(Node):
    """Save latents as a .latent file in the output folder, with the prompt and workflow inside."""

    category = "_for_testing"
    output_node = True
    hidden = SAVE_HIDDEN

    def run(
        self,
        ctx: Context,
        samples: Annotated[Latent, Input("The latents to save.")],
        filename_prefix: Annotated[
            str, Input("File name prefix; may contain a subfolder.")
        ] = "latents/ComfyUI",
    ) -> Ui:
        import torch
        from safetensors.torch import save_file

        slot = output_slot(ctx.folders.output, filename_prefix)
        filename = f"{slot.name}_{slot.counter:05}_.latent"
        metadata = {"prompt": json.dumps(ctx.prompt) if ctx.prompt else ""}
        metadata.update({key: json.dumps(value) for key, value in ctx.extra_pnginfo.items()})
        tensors = {"latent_tensor": samples["samples"].contiguous(), FORMAT_MARKER: torch.tensor([])}
        save_file(tensors, str(slot.folder / filename), metadata=metadata)
        return Ui(latents=[{"filename": filename, "subfolder": slot.subfolder, "type": "output"}])


def input_latents() -> list[str]:
    """The .latent files directly in the input folder."""
    root = folders.current().input
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_file() and p.name.endswith(".latent"))


class LoadLatent(Node):
    """Load a .latent file from the input folder."""

    category = "_for_testing"

    def run(
        self, latent: Annotated[str, Input("A .latent file in the input folder.", choices=input_latents)]
    ) -> Latent:
        from safetensors.torch import load_file

        tensors = load_file(str(safe_join(folders.current().input, latent)), device="cpu")
        if "latent_tensor" not in tensors:
            raise ValueError(f"LoadLatent: {latent} holds no 'latent_tensor'; it is not a .latent file")
        scale = 1.0 if FORMAT_MARKER in tensors else OLD_FORMAT_SCALE
        return {"samples": tensors["latent_tensor"].float() * scale}

    @classmethod
    def fingerprint(cls, latent: str) -> str:
        """The file's content hash: a file replaced under the same name is loaded again."""
        return hashlib.sha256(safe_join(folders.current().input, latent).read_bytes()).hexdigest()
