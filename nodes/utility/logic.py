"""ComfyUI's If/Else switch (`ComfySwitchNode`, added to ComfyUI after 0.3.64 in comfy_extras/nodes_logic.py).

Its branches are lazy: only the chosen one is computed.
"""

from __future__ import annotations

from typing import Annotated, Any

from engine.native import Input, Node, Output, Socket

AnyValue = Annotated[Any, Socket("*")]
_MISSING = object()  # an optional branch that is not connected at all


class ComfySwitchNode(Node):
    """Pass on `on_true` when `switch` is on, else `on_false`; the other branch is not computed.
    A branch that is not connected gives None."""

    display_name = "If/Else Switch"
    category = "utilities/logic"

    def run(
        self,
        switch: Annotated[bool, Input("Which branch to pass on.")],
        on_false: Annotated[AnyValue | None, Input("Passed on when the switch is off.", lazy=True)] = None,
        on_true: Annotated[AnyValue | None, Input("Passed on when the switch is on.", lazy=True)] = None,
    ) -> Annotated[AnyValue, Output("output")]:
        return on_true if switch else on_false

    def check_lazy_status(self, switch: bool, on_false: Any = _MISSING, on_true: Any = _MISSING) -> list[str]:
        """Ask for the chosen branch while it is connected but not computed yet (None)."""
        if switch and on_true is None:
            return ["on_true"]
        if not switch and on_false is None:
            return ["on_false"]
        return []
