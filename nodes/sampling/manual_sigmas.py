"""ManualSigmas (ComfyUI's newer `comfy_extras.nodes_custom_sampler`, not in 0.3.64): SIGMAS typed in as a
list of numbers, e.g. a distilled model's own schedule ("1.0, 0.978453, …, 0")."""

from __future__ import annotations

import re
from typing import Annotated

from engine.native import Input, Node
from nodes.sampling.custom_sampling import Sigmas

# Numbers separated by commas and/or whitespace.
SEPARATORS = re.compile(r"[,\s]+")


def parse_sigmas(text: str, node: str = "ManualSigmas") -> list[float]:
    """The numbers in `text`, in order; anything that is not a number is an error naming it."""
    values = []
    for item in SEPARATORS.split(text.strip()):
        if not item:
            continue
        try:
            values.append(float(item))
        except ValueError:
            raise ValueError(f"{node}: input 'sigmas' holds {item!r}, which is not a number") from None
    if not values:
        raise ValueError(f"{node}: input 'sigmas' holds no numbers (expected e.g. '1, 0.5, 0')")
    return values


class ManualSigmas(Node):
    """SIGMAS from a typed list of noise levels, highest first (a flow model's run from 1 down to 0)."""

    category = "_for_testing/custom_sampling"

    def run(
        self,
        sigmas: Annotated[str, Input("Noise levels separated by commas, highest first.")] = "1, 0.5",
    ) -> Sigmas:
        import torch

        return torch.tensor(parse_sigmas(sigmas), dtype=torch.float32)
