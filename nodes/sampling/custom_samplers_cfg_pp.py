"""SAMPLER nodes for the CFG++ samplers and SA-Solver (ComfyUI's SamplerEulerAncestralCFGPP,
SamplerEulerCFGpp and SamplerSASolver). The samplers are engine.sampling's; see docs/sampling.md."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Model, Node
from nodes.sampling.custom_sampling import SAMPLERS, SamplerSocket, _sampler


class SamplerEulerAncestralCFGPP(Node):
    """Euler ancestral with CFG++: each step re-noises along the unconditional prediction's noise."""

    display_name = "SamplerEulerAncestralCFG++"
    category = SAMPLERS

    def run(
        self,
        eta: Annotated[
            float,
            Input(
                "Share of fresh noise added at each step (0: CFG++ Euler).",
                min=0.0,
                max=1.0,
                step=0.01,
                round=False,
            ),
        ] = 1.0,
        s_noise: Annotated[
            float, Input("Scale of the added noise.", min=0.0, max=10.0, step=0.01, round=False)
        ] = 1.0,
    ) -> SamplerSocket:
        return _sampler("euler_ancestral_cfg_pp", eta=eta, s_noise=s_noise)


class SamplerEulerCFGpp(Node):
    """Euler with CFG++ ("regular", KSampler's euler_cfg_pp) or ComfyUI's earlier form ("alternative")."""

    display_name = "SamplerEulerCFG++"
    category = "_for_testing"
    experimental = True

    def run(
        self,
        version: Annotated[str, Input("Which CFG++ Euler step to take.", choices=("regular", "alternative"))],
    ) -> SamplerSocket:
        return _sampler("euler_pp" if version == "alternative" else "euler_cfg_pp")


PERCENT = {"min": 0.0, "max": 1.0, "step": 0.001}


class SamplerSASolver(Node):
    """SA-Solver (stochastic Adams predictor-corrector), stochastic between two points of the schedule."""

    category = SAMPLERS

    def run(
        self,
        *,
        model: Annotated[Model, Input("The model whose schedule places the SDE interval.")],
        eta: Annotated[
            float,
            Input(
                "Stochastic strength inside the interval (0: the ODE).",
                min=0.0,
                max=10.0,
                step=0.01,
                round=False,
            ),
        ] = 1.0,
        sde_start_percent: Annotated[
            float, Input("Where in the schedule noise starts being added.", **PERCENT)
        ] = 0.2,
        sde_end_percent: Annotated[float, Input("Where in the schedule it stops.", **PERCENT)] = 0.8,
        s_noise: Annotated[
            float, Input("Scale of the added noise.", min=0.0, max=100.0, step=0.01, round=False)
        ] = 1.0,
        predictor_order: Annotated[int, Input("Past predictions the predictor uses.", min=1, max=6)] = 3,
        corrector_order: Annotated[
            int, Input("Predictions the corrector uses (0: no correction).", min=0, max=6)
        ] = 4,
        use_pece: Annotated[bool, Input("Evaluate the model again on each corrected state.")],
        simple_order_2: Annotated[bool, Input("Use the paper's simplified second-order coefficients.")],
    ) -> SamplerSocket:
        from engine.sampling.custom import model_sampling_of
        from engine.sampling.samplers_sa_solver import tau_interval

        sampling = model_sampling_of(model)
        start = float(sampling.percent_to_sigma(sde_start_percent))
        end = float(sampling.percent_to_sigma(sde_end_percent))
        return _sampler(
            "sa_solver",
            tau_func=tau_interval(start, end, eta=eta),
            s_noise=s_noise,
            predictor_order=predictor_order,
            corrector_order=corrector_order,
            use_pece=use_pece,
            simple_order_2=simple_order_2,
        )
