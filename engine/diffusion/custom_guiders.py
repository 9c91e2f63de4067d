"""ComfyUI's custom guiders (comfy_extras/nodes_custom_sampler.py, nodes_perpneg.py) on Loom's CFGGuider:
`Guider_Basic` (positive only), `Guider_DualCFG` (two positives against a negative, added or nested) and
`Guider_PerpNeg` (positive, negative and empty prompt with Perp-Neg), and `perp_neg` itself.
"""

from __future__ import annotations

import math
from typing import Any

from engine.diffusion.guidance import calc_cond_batch, cfg_function, convert_cond
from engine.diffusion.guider import CFGGuider


class Guider_Basic(CFGGuider):
    """Only the positive conditioning, no guidance (cfg 1): for distilled models such as Flux."""

    def set_conds(self, positive: list[Any]) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive})


class Guider_DualCFG(CFGGuider):
    """Two positive conditionings against a negative: regular (added) or nested guidance."""

    def set_cfg(self, cfg1: float, cfg2: float, nested: bool = False) -> None:  # type: ignore[override]
        self.cfg1, self.cfg2, self.nested = cfg1, cfg2, nested

    def set_conds(self, positive: list[Any], middle: list[Any], negative: list[Any]) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive, "negative": negative})
        self.original_conds["middle"] = convert_cond(middle, "negative")

    def predict_noise(
        self, x: Any, timestep: Any, model_options: dict[str, Any] | None = None, seed: int | None = None
    ) -> Any:
        options = model_options or {}
        negative, middle, positive = (self.conds.get(k) for k in ("negative", "middle", "positive"))
        model = self.inner_model
        if self.nested:
            out = calc_cond_batch(model, [negative, middle, positive], x, timestep, options)
            text = cfg_function(
                model, out[2], out[1], self.cfg1, x, timestep, options, cond=positive, uncond=middle
            )
            return out[0] + self.cfg2 * (text - out[0])
        if not options.get("disable_cfg1_optimization", False) and math.isclose(self.cfg2, 1.0):
            negative = None
            if math.isclose(self.cfg1, 1.0):
                middle = None
        out = calc_cond_batch(model, [negative, middle, positive], x, timestep, options)
        guided = cfg_function(
            model, out[1], out[0], self.cfg2, x, timestep, options, cond=middle, uncond=negative
        )
        return guided + (out[2] - out[1]) * self.cfg1


def perp_neg(
    x: Any, pos_pred: Any, neg_pred: Any, empty_pred: Any, neg_scale: float, cond_scale: float
) -> Any:
    """Perp-Neg (Armandpour et al. 2023): remove from the negative direction its part along the positive."""
    del x
    pos = pos_pred - empty_pred
    neg = neg_pred - empty_pred
    perp = neg - ((neg * pos).sum() / (pos.norm() ** 2)) * pos
    return empty_pred + cond_scale * (pos - perp * neg_scale)


class Guider_PerpNeg(CFGGuider):
    """Guidance by a positive, a negative and an empty prompt with Perp-Neg."""

    def set_conds(self, positive: list[Any], negative: list[Any], empty_negative_prompt: list[Any]) -> None:  # type: ignore[override]
        self.inner_set_conds({"positive": positive, "negative": negative})
        self.original_conds["empty_negative_prompt"] = convert_cond(empty_negative_prompt, "negative")

    def set_cfg(self, cfg: float, neg_scale: float = 1.0) -> None:
        self.cfg, self.neg_scale = cfg, neg_scale

    def predict_noise(
        self, x: Any, timestep: Any, model_options: dict[str, Any] | None = None, seed: int | None = None
    ) -> Any:
        options = model_options or {}
        positive, negative, empty = (
            self.conds.get(k) for k in ("positive", "negative", "empty_negative_prompt")
        )
        if not options.get("disable_cfg1_optimization", False) and math.isclose(self.neg_scale, 0.0):
            negative = None
            if math.isclose(self.cfg, 1.0):
                empty = None
        conds = [positive, negative, empty]
        model = self.inner_model
        out = calc_cond_batch(model, conds, x, timestep, options)
        for fn in options.get("sampler_pre_cfg_function", []):
            args = {
                "conds": conds,
                "conds_out": out,
                "cond_scale": self.cfg,
                "timestep": timestep,
                "input": x,
                "sigma": timestep,
                "model": model,
                "model_options": options,
            }
            out = fn(args)
        pos_pred, neg_pred, empty_pred = out
        result = perp_neg(x, pos_pred, neg_pred, empty_pred, self.neg_scale, self.cfg)
        for fn in options.get("sampler_post_cfg_function", []):
            args = {
                "denoised": result,
                "cond": positive,
                "uncond": negative,
                "cond_scale": self.cfg,
                "model": model,
                "uncond_denoised": neg_pred,
                "cond_denoised": pos_pred,
                "sigma": timestep,
                "model_options": options,
                "input": x,
                "empty_cond": empty,
                "empty_cond_denoised": empty_pred,
            }
            result = fn(args)
        return result
