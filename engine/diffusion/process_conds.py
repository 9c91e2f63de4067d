"""ComfyUI's rules on the cond lists before sampling (its `process_conds`), run by the guider once the
areas are resolved to latent pixels: every area gets an opposite one in the other lists
(`add_opposite_areas`), and ControlNets applied to the positive side only and GLIGEN boxes are shared with
the other lists' full-frame entries (`share_with_uncond`).
"""

from __future__ import annotations

import math
from typing import Any

# What an entry predicts with (ComfyUI's "model conds"), as opposed to where and when it applies.
MODEL_CONDITION_KEYS = frozenset(
    {
        "cross_attn",
        "pooled_output",
        "width",
        "height",
        "crop_w",
        "crop_h",
        "target_width",
        "target_height",
        "aesthetic_score",
        "concat_latent_image",
        "concat_mask",
        "y",
        "reference_latents",
        "reference_latents_method",
    }
)


def share_with_uncond(conds: dict[str, list[dict[str, Any]]]) -> None:
    """ComfyUI's apply_empty_x_to_equal_area, for ControlNets applied with `control_apply_to_uncond`
    (the old ControlNetApply) and for GLIGEN boxes: unless another cond list's full-frame entries
    already carry their own, they take the positive side's, so CFG compares like with like."""
    positive = conds.get("positive", [])
    sources = {
        "control": [e for e in positive if e.get("control_apply_to_uncond")],
        "gligen": positive,
    }
    for name, entries in conds.items():
        if name != "positive":
            for key, source in sources.items():
                _share_full_frame(source, entries, key)


def _share_full_frame(source: list[dict[str, Any]], entries: list[dict[str, Any]], key: str) -> None:
    given = [e[key] for e in source if "area" not in e and e.get(key) is not None]
    frame = [i for i, e in enumerate(entries) if "area" not in e]
    if not given or not frame or any(entries[i].get(key) is not None for i in frame):
        return
    for n, value in enumerate(given):  # more values than entries: later ones win, as in ComfyUI
        index = frame[n % len(frame)]
        entries[index] = {**entries[index], key: value}


def add_opposite_areas(conds: dict[str, list[dict[str, Any]]]) -> None:
    """ComfyUI's rule that every area has an opposite one: for each entry with an area, every other
    cond list gets a copy of it that predicts with that list's smallest entry covering the area (or its
    first entry without an area). Areas must be resolved to latent pixels first (`resolve_conds`)."""
    for name, entries in conds.items():
        for entry in entries:  # grows while it is read: copies placed here are looked at too
            for other_name, others in conds.items():
                if other_name != name:
                    _add_same_area_copy(others, entry)


def _add_same_area_copy(entries: list[dict[str, Any]], entry: dict[str, Any]) -> None:
    area = entry.get("area")
    if area is None:
        return
    smallest: dict[str, Any] | None = None
    for other in entries:
        other_area = other.get("area")
        if other_area is None:
            if smallest is None:
                smallest = other
        elif _inside(area, other_area) and (
            smallest is None
            or "area" not in smallest
            or math.prod(smallest["area"][:2]) > math.prod(other_area[:2])
        ):
            smallest = other
    if smallest is None or tuple(smallest.get("area", ())) == tuple(area):
        return
    copy = {k: v for k, v in entry.items() if k not in MODEL_CONDITION_KEYS}
    copy.update({k: v for k, v in smallest.items() if k in MODEL_CONDITION_KEYS})
    entries.append(copy)


def _inside(area: Any, outer: Any) -> bool:
    h, w, y, x0 = (int(v) for v in area)
    outer_h, outer_w, outer_y, outer_x = (int(v) for v in outer)
    return y >= outer_y and x0 >= outer_x and y + h <= outer_y + outer_h and x0 + w <= outer_x + outer_w
