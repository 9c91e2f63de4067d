"""Control objects on the cond lists of a sampling run: prepare, place and clean them up.

What ComfyUI's sampler helpers do with the `"control"` key of conditioning entries (sharing a control
applied with the old ControlNetApply onto the negative side is `engine.diffusion.process_conds.
share_with_uncond`, beside GLIGEN's boxes): before the first step every control chain gets `pre_run`
with the sampled model and its percent-to-sigma function, and its modules go to the compute device
(`prepare`); after the run each chain's `cleanup` drops its cached hints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


def controls_of(conds: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """Each distinct control object on the cond lists, in order of first appearance."""
    seen: dict[int, Any] = {}
    for entries in conds.values():
        for entry in entries:
            control = entry.get("control")
            if control is not None:
                seen.setdefault(id(control), control)
    return list(seen.values())


def prepare(model: Any, conds: dict[str, list[dict[str, Any]]]) -> list[Any]:
    """pre_run every control chain for `model` and put its modules on the compute device; returns the
    controls, for `cleanup`."""
    from engine.diffusion.controlnet_flow import check_controls
    from engine.diffusion.devices import manager

    controls = controls_of(conds)
    check_controls(controls, model)
    sampling = model.model_sampling
    for control in controls:
        with fitting(control, model):
            control.pre_run(model, sampling.percent_to_sigma)
    modules = [m for control in controls for m in control.get_models() if hasattr(m, "parameters")]
    if modules:
        manager().use(*modules)
    return controls


@contextlib.contextmanager
def fitting(control: Any, model: Any) -> Iterator[None]:
    """Turn the shape or key errors of a control model made for another UNet into an error that names
    its file (they show only once it meets the sampled model)."""
    try:
        yield
    except (RuntimeError, KeyError) as exc:
        chain, names = control, []
        while chain is not None:
            names.append(getattr(chain, "source", "") or type(chain).__name__)
            chain = getattr(chain, "previous_controlnet", None)
        family = getattr(model, "family", "this")
        raise ValueError(
            f"the control model {' or '.join(dict.fromkeys(names))} does not fit the {family} model being"
            f" sampled (made for another model family?): {type(exc).__name__}: {exc}"
        ) from exc


def cleanup(controls: list[Any]) -> None:
    for control in controls:
        control.cleanup()
