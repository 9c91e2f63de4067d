"""Give memory that a finished prompt freed back to the operating system.

glibc keeps freed heap memory for reuse: after a VAE decode's large activations are freed the process
stays that much bigger (about 60 MB after an SD1.5-layout 256² run, measured here). `malloc_trim(0)`
returns it in a few milliseconds, so it runs after prompts long enough for that not to matter.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from functools import cache
from typing import Any

# Prompts shorter than this are not followed by a trim (a trivial prompt takes milliseconds).
MIN_PROMPT_SECONDS = 1.0


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_freed(started: float) -> bool:
    """Trim the heap if the prompt that began at `started` (time.monotonic) ran long enough; True if it
    did. Without glibc (macOS, Windows, musl without malloc_trim) nothing happens."""
    if time.monotonic() - started < MIN_PROMPT_SECONDS:
        return False
    gc.collect()  # the prompt's reference cycles first, so their memory is free to hand back
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
