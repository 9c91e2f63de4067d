"""FluxKVCache: Flux.2's reference images attended through cached keys and values."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node


class FluxKVCache(Node):
    """Run Flux.2's reference images once, keep their keys and values, and let the other sampling calls
    attend to those (as Flux.2 Klein 9B KV is made to run: the references modulated as at timestep 0 and
    attending only to themselves)."""

    category = ""  # ComfyUI's (an experimental node at the top level)
    display_name = "Flux KV Cache"

    def run(self, model: Annotated[Model, Input("The Flux.2 model to use the KV cache on.")]) -> Model:
        from engine.diffusion.flow_flux2 import KV_OPTION, Flux2, ReferenceKVCache

        inner: Any = getattr(model, "model", None)
        if not isinstance(inner, Flux2):
            family = getattr(inner, "family", type(inner).__name__)
            raise ValueError(
                f"FluxKVCache: input 'model' must be a Flux.2 model (dev or Klein), got a {family} model"
            )
        patched = model.clone()
        options = patched.model_options.setdefault("transformer_options", {})
        options[KV_OPTION] = ReferenceKVCache()
        return patched
