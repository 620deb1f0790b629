"""Tells every register following clock changes about a moved sandbox clock, and waits until each has been told.

The registers keep each sandbox's clock setting in memory (services.common.sandbox_client) so that a
request's date costs no GetClock call (issue 11). SetClock and ResetSandbox answer only once every
follower of this process has the new setting. Only a SandboxAdmin on SQLite (always one process)
says "subscribed" on the stream: on PostgreSQL other SandboxAdmin processes (workers, replicas) may
move a clock without telling this process's followers, so there the registers keep asking GetClock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from services.common.clock import ClockSetting

log = logging.getLogger(__name__)

# A follower that does not take a clock change within this time has gone away (its copy dies with it).
DELIVERY_TIMEOUT_SECONDS = 2.0


@dataclass(frozen=True)
class ClockMoved:
    """A sandbox's clock setting after SetClock or ResetSandbox moved it."""

    sandbox_id: str
    clock: ClockSetting


class ClockSubscription:
    """One follower's queue of clock changes; iterate it, and close it when the follower goes away."""

    def __init__(self, hub: ClockHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[tuple[ClockMoved, asyncio.Future[None]]] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[tuple[ClockMoved, Callable[[], None]]]:
        """Each change with a callback that confirms it was delivered."""
        while True:
            moved, done = await self.queue.get()

            def confirm(done: asyncio.Future[None] = done) -> None:
                with contextlib.suppress(asyncio.InvalidStateError):
                    done.set_result(None)

            yield moved, confirm

    def close(self) -> None:
        self._hub.unsubscribe(self)
        while not self.queue.empty():  # nobody will deliver these: do not keep the publisher waiting
            _moved, done = self.queue.get_nowait()
            with contextlib.suppress(asyncio.InvalidStateError):
                done.set_result(None)


class ClockHub:
    """Fan-out of clock changes to the StreamClockChanges calls of this process."""

    def __init__(self) -> None:
        self._subscriptions: set[ClockSubscription] = set()

    def subscribe(self) -> ClockSubscription:
        subscription = ClockSubscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: ClockSubscription) -> None:
        self._subscriptions.discard(subscription)

    async def publish(self, moved: ClockMoved) -> None:
        """Hands the change to every follower; returns once each has written it to its stream (or timed out)."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for subscription in list(self._subscriptions):
            done: asyncio.Future[None] = loop.create_future()
            subscription.queue.put_nowait((moved, done))
            pending.append(done)
        if pending:
            _finished, late = await asyncio.wait(pending, timeout=DELIVERY_TIMEOUT_SECONDS)
            if late:
                log.warning("%d clock follower(s) silent for %.1fs", len(late), DELIVERY_TIMEOUT_SECONDS)
