"""Skip-layer guidance for DiT models (ComfyUI's SkipLayerGuidanceDiT, SkipLayerGuidanceDiTSimple,
SkipLayerGuidanceSD3): an extra prediction with some transformer blocks skipped (their "dit" block
replacement returns its input) steers the result away from what those blocks leave out. Inspired by
Perturbed-Attention Guidance (Ahn et al. 2024, arXiv:2403.17377); the SD3 recipe is Stability AI's."""

from __future__ import annotations

import re
from typing import Annotated, Any

from engine.native import Input, Model, Node

LAYERS = Input("Comma-separated block indices.")
PERCENT = {"min": 0.0, "max": 1.0, "step": 0.001}


def _indices(text: str) -> list[int]:
    return [int(i) for i in re.findall(r"\d+", text)]


def _skip(args: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    return args


def _skipping(model_options: dict[str, Any], double: list[int], single: list[int]) -> dict[str, Any]:
    from engine.diffusion.model_options import set_model_options_patch_replace

    options = dict(model_options)
    for kind, layers in (("double_block", double), ("single_block", single)):
        for layer in layers:
            options = set_model_options_patch_replace(options, _skip, "dit", kind, layer)
    return options


def skip_layer_guidance(
    model: Any,
    scale: float,
    start_percent: float,
    end_percent: float,
    double: list[int],
    single: list[int],
    rescaling_scale: float = 0.0,
) -> Any:
    """A clone of `model` whose guided prediction adds scale × (cond − cond with the layers skipped)
    while sigma lies between the percents' sigmas (and optionally rescales toward cond's spread)."""
    if not double and not single:
        return model
    sampling = model.get_model_object("model_sampling")
    sigma_start, sigma_end = sampling.percent_to_sigma(start_percent), sampling.percent_to_sigma(end_percent)

    def post_cfg(args: dict[str, Any]) -> Any:
        from engine.diffusion.guidance import calc_cond_batch

        result, cond_pred, sigma = args["denoised"], args["cond_denoised"], args["sigma"]
        current = float(sigma[0])
        if scale > 0 and sigma_end <= current <= sigma_start:
            options = _skipping(args["model_options"], double, single)
            (skipped,) = calc_cond_batch(args["model"], [args["cond"]], args["input"], sigma, options)
            result = result + (cond_pred - skipped) * scale
            if rescaling_scale != 0:
                factor = cond_pred.std() / result.std()
                result = result * (rescaling_scale * factor + (1 - rescaling_scale))
        return result

    patched = model.clone()
    patched.set_model_sampler_post_cfg_function(post_cfg)
    return patched


class SkipLayerGuidanceDiT(Node):
    """Skip-layer guidance for any DiT (Flux, Chroma, SD3, Qwen-Image): double and single block indices."""

    category = "advanced/guidance"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        double_layers: Annotated[str, LAYERS] = "7, 8, 9",
        single_layers: Annotated[str, LAYERS] = "7, 8, 9",
        scale: Annotated[float, Input("Strength of the extra guidance.", min=0.0, max=10.0, step=0.1)] = 3.0,
        start_percent: Annotated[float, Input("Where it starts.", **PERCENT)] = 0.01,
        end_percent: Annotated[float, Input("Where it ends.", **PERCENT)] = 0.15,
        rescaling_scale: Annotated[
            float, Input("Pull the result's spread toward the conditional's.", min=0.0, max=10.0, step=0.01)
        ] = 0.0,
    ) -> Model:
        return skip_layer_guidance(
            model,
            scale,
            start_percent,
            end_percent,
            _indices(double_layers),
            _indices(single_layers),
            rescaling_scale,
        )


class SkipLayerGuidanceSD3(Node):
    """Skip-layer guidance for SD3/SD3.5 (its joint blocks); 7, 8, 9 is Stability AI's choice for SD3.5."""

    category = "advanced/guidance"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        layers: Annotated[str, LAYERS] = "7, 8, 9",
        scale: Annotated[float, Input("Strength of the extra guidance.", min=0.0, max=10.0, step=0.1)] = 3.0,
        start_percent: Annotated[float, Input("Where it starts.", **PERCENT)] = 0.01,
        end_percent: Annotated[float, Input("Where it ends.", **PERCENT)] = 0.15,
    ) -> Model:
        return skip_layer_guidance(model, scale, start_percent, end_percent, _indices(layers), [])


class SkipLayerGuidanceDiTSimple(Node):
    """Skip-layer guidance by replacing the unconditional prediction with one that skips the layers."""

    category = "advanced/guidance"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        double_layers: Annotated[str, LAYERS] = "7, 8, 9",
        single_layers: Annotated[str, LAYERS] = "7, 8, 9",
        start_percent: Annotated[float, Input("Where it starts.", **PERCENT)] = 0.0,
        end_percent: Annotated[float, Input("Where it ends.", **PERCENT)] = 1.0,
    ) -> Model:
        double, single = _indices(double_layers), _indices(single_layers)
        if not double and not single:
            return model
        sampling = model.get_model_object("model_sampling")
        sigma_start = sampling.percent_to_sigma(start_percent)
        sigma_end = sampling.percent_to_sigma(end_percent)

        def calc_cond_batch_function(args: dict[str, Any]) -> Any:
            from engine.diffusion.guidance import calc_cond_batch

            x, model_, sigma, options = args["input"], args["model"], args["sigma"], args["model_options"]
            cond, uncond = args["conds"]
            if sigma_end <= float(sigma[0]) <= sigma_start and uncond is not None:
                cond_out, _ = calc_cond_batch(model_, [cond, None], x, sigma, options)
                skipping = _skipping(options, double, single)
                _, uncond_out = calc_cond_batch(model_, [None, uncond], x, sigma, skipping)
                return [cond_out, uncond_out]
            return calc_cond_batch(model_, args["conds"], x, sigma, options)

        patched = model.clone()
        patched.set_model_sampler_calc_cond_batch_function(calc_cond_batch_function)
        return patched
