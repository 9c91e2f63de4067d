"""Flux.2's scheduler node (engine.sampling.flux2_schedule)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Input, Node
from nodes.image.basic import MAX_RESOLUTION
from nodes.sampling.custom_sampling import Sigmas
from nodes.sampling.custom_sigmas import SCHEDULERS

STEPS = Input("Number of sampling steps.", min=1, max=4096)
SIZE = Input("The image's size in pixels (16 per token).", min=16, max=MAX_RESOLUTION, step=1)


class Flux2Scheduler(Node):
    """Flux.2's schedule: times from 1 to 0 shifted for the image's token count and the step count."""

    category = SCHEDULERS

    def run(
        self,
        steps: Annotated[int, STEPS] = 20,
        width: Annotated[int, SIZE] = 1024,
        height: Annotated[int, SIZE] = 1024,
    ) -> Sigmas:
        from engine.sampling.flux2_schedule import flux2_sigmas

        return flux2_sigmas(steps, width, height)
