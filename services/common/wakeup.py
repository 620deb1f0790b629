"""Following an append-only log (change log, feedback outbox) with a cursor, woken as soon as a writer commits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from services.common.caller import Caller

T = TypeVar("T")

log = logging.getLogger(__name__)

# A confirming follower that has not caught up within this time has gone away or hangs: writers stop waiting.
DELIVERY_TIMEOUT_SECONDS = 2.0


class Follower:
    """A confirming follower's place in a log: writers wait until it has been handed their commits."""

    def __init__(self) -> None:
        # The number of the last notify whose commit this follower has been handed (-1: still catching up).
        self.delivered = -1


class LogWakeup:
    """One per log. Writers call `notify()` after their transaction commits; readers wait on it.

    A reader also wakes after `poll_seconds` anyway, so commits by other
    processes (replicas, a CLI) are seen too, only a little later.
    """

    def __init__(self, poll_seconds: float = 1.0) -> None:
        self.poll_seconds = poll_seconds
        self._event = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        # Notifies are numbered; writers notify from any thread.
        self._numbering = threading.Lock()
        self.notified = 0
        self._followers: set[Follower] = set()
        self._progress = asyncio.Event()

    async def start(self, database_url: str, log_name: str) -> None:
        """Binds to the running loop and, on PostgreSQL, listens for commits by any process."""
        self.bind(asyncio.get_running_loop())
        if database_url.startswith("postgresql") and self._listener is None:
            self._listener = asyncio.create_task(self.listen_postgres(database_url, log_name))

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Binds to the server's event loop; `notify` may then be called from any thread."""
        self._loop = loop

    def notify(self) -> int:
        """Wakes the readers after a commit; returns the notify's number (see `delivered`)."""
        with self._numbering:
            self.notified += 1
            number = self.notified
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake)
        return number

    # --- confirming followers: a register that keeps a copy of this log's state (ROD of RIO and BRP) ---

    def join(self) -> Follower:
        """Registers a confirming follower: from now on `delivered` waits for it too."""
        follower = Follower()
        self._followers.add(follower)
        return follower

    @contextlib.contextmanager
    def confirming(self, caller: Caller) -> Iterator[Follower | None]:
        """The stream's place as a confirming follower while it lasts, or None for any caller but a register
        following every sandbox: such a register keeps a copy (ROD's of RIO's offerings and BRP's persons), so
        every write waits until it was handed to it. The stream tells it so with an empty first message."""
        follower = self.join() if caller.internal and caller.sandbox_id is None else None
        try:
            yield follower
        finally:
            if follower is not None:
                self.leave(follower)

    def leave(self, follower: Follower) -> None:
        self._followers.discard(follower)
        self._report()

    def caught_up(self, follower: Follower, number: int) -> None:
        """The follower has been handed every commit notified up to `number` (its read after it came back empty)."""
        if number > follower.delivered:
            follower.delivered = number
            self._report()

    def _report(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def delivered(self, number: int) -> None:
        """Returns once every confirming follower has been handed the commit of notify `number`.

        A writer awaits this before it answers, so a caller that got the answer
        can count on each follower's copy knowing of the change (the way
        SandboxAdmin answers a key revocation only once every follower was told).
        A follower silent for DELIVERY_TIMEOUT_SECONDS is not waited for longer.
        """
        deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
        while any(f.delivered < number for f in self._followers):
            progress = self._progress
            left = deadline - time.monotonic()
            if left <= 0:
                log.warning("a confirming follower is %.1fs behind; answering without it", DELIVERY_TIMEOUT_SECONDS)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(progress.wait(), timeout=left)

    def _wake(self) -> None:
        self._event.set()
        # Every current waiter has been woken; later waiters wait for the next commit.
        self._event = asyncio.Event()

    async def listen_postgres(self, database_url: str, log_name: str) -> None:
        """Wakes readers whenever any process commits to the log (PostgreSQL LISTEN/NOTIFY).

        Runs until cancelled; start it as a task beside the server. Connection
        trouble only costs latency: readers still poll.
        """
        import psycopg
        from psycopg import sql

        from services.common.database import notify_channel

        conninfo = database_url.replace("postgresql+psycopg://", "postgresql://", 1)
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as connection:
                    await connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(notify_channel(log_name))))
                    async for _ in connection.notifies():
                        self._wake()
            except psycopg.Error:
                await asyncio.sleep(self.poll_seconds)

    def current(self) -> asyncio.Event:
        """The event the next commit will set. Take it *before* reading the log, so a commit
        between the read and the wait is not missed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._event

    async def wait(self, event: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=self.poll_seconds)


async def follow_log(
    read_after: Callable[[int], Awaitable[Sequence[T]]],
    cursor_of: Callable[[T], int],
    after: int,
    wakeup: LogWakeup,
    follower: Follower | None = None,
) -> AsyncIterator[T]:
    """Yields every entry with a cursor above `after`, in cursor order, then each new one as it commits.

    read_after(cursor) returns the next batch of entries after cursor (empty
    when caught up). The caller ends the stream by cancelling (the client went away).
    A confirming `follower` (LogWakeup.join) reports each time it has caught up.
    """
    cursor = after
    while True:
        event = wakeup.current()
        # Every commit notified up to here committed before this read: an empty read means all were handed on.
        seen = wakeup.notified
        batch = await read_after(cursor)
        for entry in batch:
            yield entry
            cursor = cursor_of(entry)
        if not batch:
            if follower is not None:
                wakeup.caught_up(follower, seen)
            await wakeup.wait(event)
