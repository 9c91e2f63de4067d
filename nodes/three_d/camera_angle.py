"""CameraAngle (ComfyUI's newer `comfy_extras.nodes_camera_angle`, not in 0.3.64): a camera placed around
a subject by azimuth, elevation and zoom, given as a LOAD3D_CAMERA for 3-D nodes and as the shot
described in plain English for multi-angle edit prompts ("front-left quarter view elevated shot medium
shot"), as the Qwen-Image Edit multi-angle template uses it.

The scene is the front end's preview: a unit cube standing on the ground (centre at y 0.5), seen
through a 35° lens from 6 units away at zoom 0 to 3.2 units at zoom 10. The optional image and the
`view` widget only feed that preview.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, NamedTuple

from engine.native import Image, Input, Node, Socket

SUBJECT_CENTER = (0.0, 0.5, 0.0)
CAMERA_FOV = 35.0
NEAREST, FARTHEST = 3.2, 6.0
ZOOM_MAX = 10.0
HORIZONTAL_TERMS = (
    "front view",
    "front-right quarter view",
    "right side view",
    "back-right quarter view",
    "back view",
    "back-left quarter view",
    "left side view",
    "front-left quarter view",
)
# (upper bound, term): the first bound above the value names it; None is the rest.
VERTICAL_TERMS = (
    (-15, "low-angle shot"),
    (15, "eye-level shot"),
    (45, "elevated shot"),
    (None, "high-angle shot"),
)
DISTANCE_TERMS = ((2, "wide shot"), (6, "medium shot"), (None, "close-up"))


def _term(value: float, terms: tuple[tuple[float | None, str], ...]) -> str:
    return next(term for upper, term in terms if upper is None or value < upper)


def describe(horizontal: float, vertical: float, zoom: float) -> str:
    """The shot in words: the 45° sector of the azimuth (centred on the named view), elevation, distance."""
    sector = int(((horizontal % 360) + 22.5) // 45) % len(HORIZONTAL_TERMS)
    return f"{HORIZONTAL_TERMS[sector]} {_term(vertical, VERTICAL_TERMS)} {_term(zoom, DISTANCE_TERMS)}"


def camera_info(horizontal: float, vertical: float, zoom: float) -> dict[str, Any]:
    """Load3D's camera: the position on a sphere around the subject, looking at its centre."""
    yaw, pitch = math.radians(horizontal), math.radians(vertical)
    distance = FARTHEST - (FARTHEST - NEAREST) * zoom / ZOOM_MAX
    cx, cy, cz = SUBJECT_CENTER
    return {
        "position": {
            "x": cx + distance * math.cos(pitch) * math.sin(yaw),
            "y": cy + distance * math.sin(pitch),
            "z": cz + distance * math.cos(pitch) * math.cos(yaw),
        },
        "target": {"x": cx, "y": cy, "z": cz},
        "zoom": 1.0,
        "cameraType": "perspective",
        "fov": CAMERA_FOV,
    }


class CameraOutputs(NamedTuple):
    camera_info: Annotated[dict, Socket("LOAD3D_CAMERA")]
    prompt: str


class CameraAngle(Node):
    """Pick a camera angle around a subject: a camera_info for 3-D nodes, a shot description for prompts."""

    display_name = "Camera Angle"
    category = "3d"

    def run(
        self,
        horizontal_angle: Annotated[
            int, Input("Azimuth in degrees: 0 front, 90 right side, 180 back.", min=0, max=360, step=1)
        ] = 0,
        vertical_angle: Annotated[
            int,
            Input("Elevation in degrees: negative from below, positive from above.", min=-30, max=60, step=1),
        ] = 0,
        zoom: Annotated[
            float, Input("0 is a wide shot, 10 a close-up.", min=0.0, max=ZOOM_MAX, step=0.1)
        ] = 5.0,
        image: Annotated[Image | None, Input("Shown on the subject in the front end's 3-D preview.")] = None,
        view: Annotated[
            str | None,
            Input(
                "The front end's preview state.",
                extra={"socketless": True, "widgetType": "CAMERA_ANGLE_VIEW"},
            ),
        ] = None,
    ) -> CameraOutputs:
        horizontal = max(0, min(360, int(horizontal_angle)))
        vertical = max(-30, min(60, int(vertical_angle)))
        distance = max(0.0, min(ZOOM_MAX, float(zoom)))
        return CameraOutputs(
            camera_info(horizontal, vertical, distance), describe(horizontal, vertical, distance)
        )
