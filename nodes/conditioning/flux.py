"""Flux conditioning: the distilled guidance strength travels on the conditioning."""

from __future__ import annotations

from typing import Annotated

from engine.native import Conditioning, Input, Node

GUIDANCE = Input("Flux dev's distilled guidance strength (its embedded 'cfg').", min=0.0, max=100.0, step=0.1)


class FluxGuidance(Node):
    """Set the guidance strength a guidance-distilled model (Flux dev) is conditioned on."""

    category = "advanced/conditioning/flux"

    def run(
        self,
        conditioning: Annotated[Conditioning, Input("The conditioning to set it on.")],
        guidance: Annotated[float, GUIDANCE] = 3.5,
    ) -> Conditioning:
        return [[cond, {**options, "guidance": guidance}] for cond, options in conditioning]
