"""Tells every register following key revocations about a revoked key, and waits until each has been told."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

# A follower that does not take a revocation within this time has gone away (its cache dies with it).
DELIVERY_TIMEOUT_SECONDS = 2.0

# A revocation of None ends the follower's stream (see RevocationHub.end_streams).
Delivery = tuple["KeyRevocation | None", asyncio.Future[None]]


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
            if revocation is None:
                return

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
    """Fan-out of revocations to the StreamKeyRevocations calls of this process, and through `relay` of the others."""

    def __init__(self) -> None:
        self._subscriptions: set[Subscription] = set()
        # Set on PostgreSQL, where other SandboxAdmin processes (workers, replicas) may serve the same sandboxes.
        self.relay: PostgresRelay | None = None

    def subscribe(self) -> Subscription:
        """Every revocation published from this call on."""
        subscription = Subscription(self)
        self._subscriptions.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscriptions.discard(subscription)

    def end_streams(self) -> None:
        """Ends every follower's stream: revocations from other processes may be missed until the relay is back,
        and a follower that is not subscribed caches nothing (services.common.sandbox_client)."""
        for subscription in list(self._subscriptions):
            subscription.queue.put_nowait((None, asyncio.get_running_loop().create_future()))

    async def ready(self) -> None:
        """Returns once revocations of every process reach this one (at once without a relay)."""
        if self.relay is not None:
            await self.relay.listening.wait()

    async def publish(self, revocation: KeyRevocation) -> None:
        """Hands the revocation to every follower of every process; returns once each has it (or timed out)."""
        if self.relay is None:
            await self.deliver(revocation)
            return
        await asyncio.gather(self.deliver(revocation), self.relay.broadcast(revocation))

    async def deliver(self, revocation: KeyRevocation) -> None:
        """Hands the revocation to this process's followers; returns once each has written it (or timed out)."""
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


class PostgresRelay:
    """Carries revocations between the SandboxAdmin processes of one PostgreSQL database (workers, replicas).

    A register follows the revocations of the one SandboxAdmin process its
    stream reached, so a revocation made in another process must reach that
    one's followers too, before RevokeSandboxKey answers. The revoking process
    sends it by NOTIFY; every other process hands it to its own followers and
    acknowledges it by NOTIFY; the revoker waits for as many acknowledgements
    as there are other processes listening (their listener connections, by
    application_name in pg_stat_activity), up to DELIVERY_TIMEOUT_SECONDS.
    """

    CHANNEL = "sandbox_key_revocations"
    ACKS = "sandbox_key_revocation_acks"
    APPLICATION = "registry-sandbox-revocations"
    _RECONNECT_SECONDS = 1.0

    def __init__(self, hub: RevocationHub, database_url: str) -> None:
        self._hub = hub
        self._conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        self._origin = uuid.uuid4().hex
        self._listener_pid: int | None = None
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Set while this process hears other processes' revocations; followers subscribe only then.
        self.listening = asyncio.Event()

    def start(self) -> None:
        self._listener = asyncio.create_task(self._listen())

    async def stop(self) -> None:
        for task in [self._listener, *self._tasks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._listener = None

    async def _listen(self) -> None:
        import psycopg

        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self._conninfo, autocommit=True, application_name=self.APPLICATION
                ) as connection:
                    await connection.execute(f"LISTEN {self.CHANNEL}")
                    self._listener_pid = connection.info.backend_pid
                    self.listening.set()
                    async for notice in connection.notifies():
                        message = json.loads(notice.payload)
                        if message["origin"] != self._origin:
                            task = asyncio.create_task(self._deliver(message))
                            self._tasks.add(task)
                            task.add_done_callback(self._tasks.discard)
            except psycopg.Error:
                log.warning("key revocation relay lost PostgreSQL; listening again", exc_info=True)
            finally:
                self._listener_pid = None
                if self.listening.is_set():
                    self.listening.clear()
                    self._hub.end_streams()
            await asyncio.sleep(self._RECONNECT_SECONDS)

    async def _deliver(self, message: dict[str, str]) -> None:
        """Another process revoked a key: tell this process's followers, then say so."""
        import psycopg

        await self._hub.deliver(KeyRevocation(message["key_hash"], message["sandbox_id"]))
        try:
            async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
                await connection.execute("SELECT pg_notify(%s, %s)", (self.ACKS, message["id"]))
        except psycopg.Error:
            log.warning("could not acknowledge a key revocation; its sender waits until its timeout", exc_info=True)

    async def broadcast(self, revocation: KeyRevocation) -> None:
        """Sends the revocation to every other process; returns once each has told its followers (or timed out)."""
        import psycopg

        try:
            await self._broadcast(revocation)
        except psycopg.Error:
            # The key is revoked in the database either way: other processes' caches drop it within their expiry.
            log.warning("could not relay a key revocation to other SandboxAdmin processes", exc_info=True)

    async def _broadcast(self, revocation: KeyRevocation) -> None:
        import psycopg

        message = {"id": uuid.uuid4().hex, "origin": self._origin, **dataclasses.asdict(revocation)}
        async with await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True) as connection:
            await connection.execute(f"LISTEN {self.ACKS}")
            counted = await connection.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND application_name = %s AND pid <> %s",
                (self.APPLICATION, self._listener_pid or 0),
            )
            row = await counted.fetchone()
            others = int(row[0]) if row else 0
            await connection.execute("SELECT pg_notify(%s, %s)", (self.CHANNEL, json.dumps(message)))
            if not others:
                return
            acknowledged = 0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DELIVERY_TIMEOUT_SECONDS):
                    async for notice in connection.notifies():
                        acknowledged += notice.payload == message["id"]
                        if acknowledged >= others:
                            return
            log.warning(
                "%d of %d other SandboxAdmin process(es) did not confirm a revocation", others - acknowledged, others
            )
