"""Many identical calls at once, as a client's retries or a load balancer's duplicates arrive."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

PARALLEL = 20


async def at_once(call: Callable[[], Awaitable[T]], times: int = PARALLEL) -> list[T]:
    """Starts `times` calls together and returns every answer; the first error propagates."""
    return list(await asyncio.gather(*(call() for _ in range(times))))
