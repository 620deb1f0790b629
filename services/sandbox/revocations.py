"""Tells every register following key revocations (or clock changes) about one, and waits until each has been told."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from services.common.clock import ClockSetting

log = logging.getLogger(__name__)

# A follower that does not take a revocation within this time has gone away (its cache dies with it).
DELIVERY_TIMEOUT_SECONDS = 2.0

T = TypeVar("T")


@dataclass(frozen=True)
class KeyRevocation:
    key_hash: str
    sandbox_id: str


@dataclass(frozen=True)
class ClockMoved:
    """A sandbox's clock setting after SetClock or ResetSandbox moved it."""

    sandbox_id: str
    clock: ClockSetting


class Subscription(Generic[T]):
    """One follower's queue of news; iterate it, and close it when the follower goes away."""

    def __init__(self, hub: Hub[T]) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[tuple[T, asyncio.Future[None]]] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[tuple[T, Callable[[], None]]]:
        """Each item with a callback that confirms it was delivered."""
        while True:
            revocation, done = await self.queue.get()

            def confirm(done: asyncio.Future[None] = done) -> None:
                with contextlib.suppress(asyncio.InvalidStateError):
                    done.set_result(None)

            yield revocation, confirm

    def close(self) -> None:
        self._hub.unsubscribe(self)
        while not self.queue.empty():  # nobody will deliver these: do not keep the publisher waiting
            _revocation, done = self.queue.get_nowait()
            with contextlib.suppress(asyncio.InvalidStateError):
                done.set_result(None)


class Hub(Generic[T]):
    """In-process fan-out of news (revocations, clock moves) to the following streams of this process."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription[T]] = set()

    def subscribe(self) -> Subscription[T]:
        """Every item published from this call on."""
        subscription = Subscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription[T]) -> None:
        self._subscriptions.discard(subscription)

    async def publish(self, item: T) -> None:
        """Hands the item to every follower; returns once each has written it to its stream (or timed out)."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for subscription in list(self._subscriptions):
            done: asyncio.Future[None] = loop.create_future()
            subscription.queue.put_nowait((item, done))
            pending.append(done)
        if pending:
            _finished, late = await asyncio.wait(pending, timeout=DELIVERY_TIMEOUT_SECONDS)
            if late:
                log.warning("%d follower(s) silent for %.1fs", len(late), DELIVERY_TIMEOUT_SECONDS)


RevocationHub = Hub[KeyRevocation]
ClockHub = Hub[ClockMoved]
