"""PerpNeg: ComfyUI's deprecated model-patch form of Perp-Neg guidance (PerpNegGuider is the current
one, in nodes/sampling/custom_guiders.py). A cfg function predicts the empty prompt as a third pass
and removes from the negative direction its component along the positive one."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Conditioning, Input, Model, Node


def _perp_neg_cfg(empty: list[dict[str, Any]], neg_scale: float) -> Any:
    def cfg(args: dict[str, Any]) -> Any:
        from engine.diffusion.custom_guiders import perp_neg
        from engine.diffusion.guidance import calc_cond_batch, resolve_conds

        x = args["input"]
        entries = [
            {k: v.to(x.device) if hasattr(v, "to") and hasattr(v, "dtype") else v for k, v in e.items()}
            for e in empty
        ]
        nocond = resolve_conds(entries, x.shape)
        (empty_pred,) = calc_cond_batch(args["model"], [nocond], x, args["sigma"], args["model_options"])
        guided = perp_neg(
            x, args["cond_denoised"], args["uncond_denoised"], empty_pred, neg_scale, args["cond_scale"]
        )
        return x - guided  # cfg functions answer in "x - denoised" form

    return cfg


class PerpNeg(Node):
    """Perp-Neg as a model patch: the negative prompt only pushes perpendicular to the positive one."""

    display_name = "Perp-Neg (DEPRECATED by PerpNegGuider)"
    category = "_for_testing"
    deprecated = True
    experimental = True

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        empty_conditioning: Annotated[Conditioning, Input("The encoded empty prompt.")],
        neg_scale: Annotated[
            float, Input("Strength of the perpendicular negative.", min=0.0, max=100.0, step=0.01)
        ] = 1.0,
    ) -> Model:
        from engine.diffusion.guidance import convert_cond

        patched = model.clone()
        patched.set_model_sampler_cfg_function(
            _perp_neg_cfg(convert_cond(empty_conditioning, "negative"), neg_scale)
        )
        return patched
