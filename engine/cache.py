"""Node output cache: stable content keys and the store that keeps outputs between prompts.

A node's key hashes its class, version, literal inputs, IS_CHANGED fingerprint and the keys of the
nodes it reads from. Node ids are not part of it, so identical subgraphs share one entry, and a key
means the same thing in every process (Python's `hash()` would not).
"""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

CacheMode = Literal["classic", "lru", "none"]
DEFAULT_MAX_BYTES = 8 << 30


@dataclass
class Entry:
    """A node's outputs (one list of items per output slot) and what it showed in the UI."""

    outputs: tuple[list[Any], ...]
    ui: dict[str, Any] | None = None
    size: int = 0


def node_key(
    class_type: str,
    version: str,
    inputs: dict[str, Any],
    source_keys: dict[str, str],
    fingerprint: Any = None,
    salt: str = "",
) -> str:
    """`source_keys` maps each linked input's source node id to that node's key."""
    if isinstance(fingerprint, float) and math.isnan(fingerprint):
        salt = uuid.uuid4().hex  # ComfyUI's convention: a NaN fingerprint never equals itself
    items = []
    for name in sorted(inputs):
        value = inputs[name]
        if _is_link(value):
            items.append([name, "@", source_keys[str(value[0])], value[1]])
        else:
            items.append([name, value])
    if not isinstance(fingerprint, (str, int, float, bool, type(None))):
        fingerprint = repr(fingerprint)
    try:
        payload = json.dumps(
            [class_type, version, items, fingerprint, salt],
            sort_keys=True,
            default=_refuse,
            separators=(",", ":"),
        )
    except TypeError:
        # A literal that is not JSON (a tensor an expansion passed on) has no stable key: never reuse it.
        return uuid.uuid4().hex
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} has no stable cache key")


def _is_link(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[1], int)


def estimate_bytes(value: Any, depth: int = 0) -> int:
    """Bytes held by tensors and arrays inside a value (models are the model manager's business)."""
    if depth > 6:
        return 0
    if hasattr(value, "element_size") and hasattr(value, "nelement"):
        return int(value.element_size() * value.nelement())
    if hasattr(value, "nbytes") and hasattr(value, "dtype"):
        return int(value.nbytes)
    if isinstance(value, (bytes, str)):
        return len(value)
    if isinstance(value, dict):
        return sum(estimate_bytes(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(estimate_bytes(v, depth + 1) for v in value)
    return 0


class OutputCache:
    """Keeps node outputs between prompts.

    classic: keep what the latest prompt used (ComfyUI's default); lru: the `lru_size` most recently
    used entries; none: nothing between prompts. In every mode the entries together stay under
    `max_bytes`, evicting the least recently used first.
    """

    def __init__(self, mode: CacheMode = "classic", lru_size: int = 0, max_bytes: int = DEFAULT_MAX_BYTES):
        self.mode = mode
        self.lru_size = lru_size
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, Entry] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: str, entry: Entry) -> None:
        if self.mode == "none":
            return
        entry.size = estimate_bytes(entry.outputs)
        self._drop(key)
        self._entries[key] = entry
        self._bytes += entry.size
        self._evict(keep=key)

    def finish_prompt(self, used: set[str]) -> None:
        """Called after each prompt with the keys it used."""
        if self.mode == "classic":
            for key in [k for k in self._entries if k not in used]:
                self._drop(key)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _evict(self, keep: str) -> None:
        def over() -> bool:
            too_many = self.mode == "lru" and len(self._entries) > max(self.lru_size, 1)
            return too_many or self._bytes > self.max_bytes

        for key in list(self._entries):
            if not over():
                break
            if key != keep:
                self._drop(key)

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry.size
