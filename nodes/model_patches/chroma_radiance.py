"""ChromaRadianceOptions (ComfyUI's `comfy_extras.nodes_chroma_radiance`): options of Chroma Radiance's
pixel decoder for the steps whose σ lies in [end_sigma, start_sigma], passed to the model in
`transformer_options["chroma_radiance_options"]` by a model function wrapper."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node


def options_wrapper(
    options: dict[str, Any], start_sigma: float, end_sigma: float, previous: Any, preserve_wrapper: bool
) -> Any:
    """A model function wrapper that adds `options` while σ is in range, then calls the previous wrapper
    (when kept) or the model."""

    def wrapper(apply_model: Any, args: dict[str, Any]) -> Any:
        c = dict(args["c"])
        sigma = float(args["timestep"].max().detach().cpu())
        if end_sigma <= sigma <= start_sigma:
            transformer_options = dict(c.get("transformer_options", {}))
            transformer_options["chroma_radiance_options"] = dict(options)
            c["transformer_options"] = transformer_options
        if preserve_wrapper and previous is not None:
            return previous(apply_model, {**args, "c": c})
        return apply_model(args["input"], args["timestep"], **c)

    return wrapper


class ChromaRadianceOptions(Node):
    """Allows setting advanced options for the Chroma Radiance model."""

    category = "model_patches/chroma_radiance"

    def run(
        self,
        model: Annotated[Model, Input("The Chroma Radiance model.")],
        preserve_wrapper: Annotated[
            bool,
            Input(
                "When enabled, will delegate to an existing model function wrapper if it exists. "
                "Generally should be left enabled."
            ),
        ] = True,
        start_sigma: Annotated[
            float, Input("First sigma that these options will be in effect.", min=0.0, max=1.0)
        ] = 1.0,
        end_sigma: Annotated[
            float, Input("Last sigma that these options will be in effect.", min=0.0, max=1.0)
        ] = 0.0,
        nerf_tile_size: Annotated[
            int,
            Input(
                "Allows overriding the default NeRF tile size. -1 means use the default (32). "
                "0 means use non-tiling mode (may require a lot of VRAM).",
                min=-1,
            ),
        ] = -1,
    ) -> Model:
        options = {"nerf_tile_size": nerf_tile_size} if nerf_tile_size >= 0 else {}
        if not options:
            return model
        previous = model.model_options.get("model_function_wrapper")
        patched = model.clone()
        patched.set_model_unet_function_wrapper(
            options_wrapper(options, start_sigma, end_sigma, previous, preserve_wrapper)
        )
        return patched
