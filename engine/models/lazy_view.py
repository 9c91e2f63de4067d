"""Key-prefixed views of a (lazy) state dict, and shapes and dtypes read without touching tensor data.

The flow families load from `LazyStateDict`s (engine.models.files): a tensor is read from disk when its
key is looked up, and every lookup reads anew. These helpers let the loaders ask for shapes (from the
file's header), select a model's keys and strip their prefix without reading anything, so that each
tensor is read exactly once, by the key converter, straight into the dtype it is assigned in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

Shapes = dict[str, tuple[int, ...]]


def shapes_of(state: Mapping[str, Any], prefix: str = "") -> Shapes:
    """Shapes of the tensors under `prefix` (keys kept whole); from the header for lazy files."""
    header = getattr(state, "header", None)
    if header is not None:
        return {k: tuple(s) for k, s in header.shapes.items() if k.startswith(prefix)}
    return {k: tuple(v.shape) for k, v in state.items() if k.startswith(prefix)}


def stored_dtypes(state: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """The stored dtype name of each matrix under `prefix` ("F8_E4M3", "BF16", … or torch's name)."""
    header = getattr(state, "header", None)
    if header is not None:
        return {
            k: loc[0]
            for k, loc in header.locations.items()
            if k.startswith(prefix) and len(header.shapes[k]) == 2
        }
    return {
        k: str(v.dtype).removeprefix("torch.")
        for k, v in state.items()
        if k.startswith(prefix) and v.ndim == 2
    }


class Prefixed(Mapping[str, Any]):
    """The entries of `state` under `prefix`, without it (and without keys `drop` rejects); values are
    looked up in `state` only when asked for."""

    def __init__(
        self, state: Mapping[str, Any], prefix: str, drop: Callable[[str], bool] | None = None
    ) -> None:
        self.state = state
        self.prefix = prefix
        self._keys = [
            k.removeprefix(prefix)
            for k in state
            if k.startswith(prefix) and not (drop and drop(k.removeprefix(prefix)))
        ]
        self._known = set(self._keys)

    def __getitem__(self, key: str) -> Any:
        if key not in self._known:
            raise KeyError(key)
        return self.state[self.prefix + key]

    def __contains__(self, key: object) -> bool:
        # Mapping's default would look the value up, i.e. read the tensor.
        return key in self._known

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)
