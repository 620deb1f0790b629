"""Tells every register following key revocations about a revoked key, and waits until each has been told."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A follower that does not take a revocation within this time has gone away (its cache dies with it).
DELIVERY_TIMEOUT_SECONDS = 2.0

Delivery = tuple["KeyRevocation", asyncio.Future[None]]


@dataclass(frozen=True)
class KeyRevocation:
    key_hash: str
    sandbox_id: str


class Subscription:
    """One follower's queue of revocations; iterate it, and close it when the follower goes away."""

    def __init__(self, hub: RevocationHub) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[Delivery] = asyncio.Queue()

    async def __aiter__(self) -> AsyncIterator[tuple[KeyRevocation, Callable[[], None]]]:
        """Each revocation with a callback that confirms it was delivered."""
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


class RevocationHub:
    """In-process fan-out of revocations to the StreamKeyRevocations calls of this process."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()

    def subscribe(self) -> Subscription:
        """Every revocation published from this call on."""
        subscription = Subscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    async def publish(self, revocation: KeyRevocation) -> None:
        """Hands the revocation to every follower; returns once each has written it to its stream (or timed out)."""
        loop = asyncio.get_running_loop()
        pending: list[asyncio.Future[None]] = []
        for subscription in list(self._subscriptions):
            done: asyncio.Future[None] = loop.create_future()
            subscription.queue.put_nowait((revocation, done))
            pending.append(done)
        if pending:
            _finished, late = await asyncio.wait(pending, timeout=DELIVERY_TIMEOUT_SECONDS)
            if late:
                log.warning("%d revocation follower(s) silent for %.1fs", len(late), DELIVERY_TIMEOUT_SECONDS)
