"""Flux.2's schedule (Black Forest Labs' `get_schedule`, ComfyUI's Flux2Scheduler, diffusers' Flux2
pipelines): `steps` evenly spaced times from 1 to 0, shifted by an exponential time-SNR shift whose mu is
fitted to the image's token count and the number of steps (the "empirical mu")."""

from __future__ import annotations

import math
from typing import Any

# Linear fits of mu in the token count at 10 and at 200 steps, as released by Black Forest Labs.
A_10, B_10 = 8.73809524e-05, 1.89833333
A_200, B_200 = 0.00016927, 0.45666666
LONG_SEQUENCE = 4300


def empirical_mu(image_seq_len: int, steps: int) -> float:
    """mu for `image_seq_len` tokens and `steps` steps: interpolated (and extrapolated) in the step count
    between the two fits, or the 200-step fit alone for long sequences."""
    at_200 = A_200 * image_seq_len + B_200
    if image_seq_len > LONG_SEQUENCE:
        return float(at_200)
    at_10 = A_10 * image_seq_len + B_10
    slope = (at_200 - at_10) / 190.0
    return float(slope * steps + at_200 - 200.0 * slope)


def flux2_sigmas(steps: int, width: int, height: int) -> Any:
    """The sigmas (steps + 1 values, 1 down to 0) for an image of width × height pixels (16 per token)."""
    import torch

    mu = empirical_mu(round(width * height / (16 * 16)), steps)
    t = torch.linspace(1, 0, steps + 1)
    # exp(mu) / (exp(mu) + (1/t - 1)); t = 0 gives 1/t = inf and so 0.
    return math.exp(mu) / (math.exp(mu) + (1 / t - 1))
