"""Running a coroutine to its result from synchronous code that may sit inside an event loop."""

from __future__ import annotations

import asyncio
import contextvars
import inspect
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def settled(value: Any) -> Any:
    """`value` itself, or, when it is awaitable, what it gives once awaited: on a fresh loop here, or
    on a helper thread (with this thread's context variables) when this thread already runs a loop."""
    if not inspect.isawaitable(value):
        return value

    async def wait() -> Any:
        return await value

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(wait())
    context = contextvars.copy_context()
    with ThreadPoolExecutor(max_workers=1) as helper:
        return helper.submit(context.run, asyncio.run, wait()).result()
