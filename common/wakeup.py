"""Wakes streams that follow an append-only log as soon as a writer in this process commits to it."""

from __future__ import annotations

import asyncio
import contextlib


class LogWakeup:
    """One per log (feedback outbox, change log). Writers call `notify` after commit; readers `wait`.

    A reader also wakes after `poll_seconds` anyway, so writers in other
    processes (replicas, or a CLI) are seen too, just a little later.
    """

    def __init__(self, poll_seconds: float = 1.0) -> None:
        self._poll_seconds = poll_seconds
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def notify(self) -> None:
        """Safe from any thread (database work runs in worker threads)."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._wake)

    def _wake(self) -> None:
        self._event.set()
        # Every current waiter has been woken; the next wait starts afresh.
        self._event = asyncio.Event()

    async def wait(self) -> None:
        event = self._event
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=self._poll_seconds)
