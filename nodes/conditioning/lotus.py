"""LotusConditioning: the fixed conditioning Lotus-D was trained with (engine.models.lotus)."""

from __future__ import annotations

from typing import Annotated

from engine.native import Conditioning, Node, Output


class LotusConditioning(Node):
    """The conditioning of Lotus-D depth/normal models: SD2's OpenCLIP-H text encoder output for the
    empty prompt, a fixed [1, 2, 1024] tensor, so no text encoder has to be loaded."""

    category = "conditioning/lotus"

    def run(self) -> Annotated[Conditioning, Output("conditioning")]:
        from engine.models.lotus import null_prompt

        return [[null_prompt(), {}]]
