"""CFGNorm (ComfyUI's `comfy_extras.nodes_cfg`, used by the Qwen-Image Edit workflows): the guided
prediction's per-pixel channel norm is capped at the conditional prediction's, then scaled."""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Model, Node, Output


def _cfg_norm(strength: float) -> Any:
    def cfg_norm(args: dict[str, Any]) -> Any:
        import torch

        cond, guided = args["cond_denoised"], args["denoised"]
        scale = torch.norm(cond, dim=1, keepdim=True) / (torch.norm(guided, dim=1, keepdim=True) + 1e-8)
        return guided * scale.clamp(min=0.0, max=1.0) * strength

    return cfg_norm


class CFGNorm(Node):
    """Keep classifier-free guidance from inflating the prediction: its norm over channels is capped at the
    conditional prediction's, then multiplied by `strength`."""

    category = "advanced/guidance"

    def run(
        self,
        model: Annotated[Model, Input("The model to patch.")],
        strength: Annotated[
            float, Input("Scale of the normalised prediction.", min=0.0, max=100.0, step=0.01)
        ] = 1.0,
    ) -> Annotated[Model, Output("patched_model")]:
        patched = model.clone()
        patched.set_model_sampler_post_cfg_function(_cfg_norm(strength))
        return patched
