"""Feedback fan-out: one reader per process follows the outbox and hands each feedback to the streams it concerns.

A stream reads the database only to catch up: after it connects or resumes
(from its cursor), and again if it fell so far behind that its queue
overflowed. Otherwise it waits on its own queue, so an idle stream costs
nothing and a commit costs one outbox read per process, however many schools
listen: the work of a new feedback grows with the streams of the schools it
concerns, not with the number of listeners.

Exactly once, in cursor order, with no gap: a subscription is registered
before its catch-up reads the database. The reader hands out every feedback
above the cursor it had reached at registration; every feedback at or below
that cursor had committed before the registration, so the catch-up, which
reads until it finds nothing more, sees it. The stream skips what it already
sent (cursor at or below its own), so the overlap of the two is harmless.
On PostgreSQL outbox cursors commit in order (services.common.database.lock_log_for_append).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from services.common import telemetry
from services.common.database import Database
from services.common.wakeup import LogWakeup
from services.rod import store
from services.rod.rules import OutboxEntry

log = logging.getLogger(__name__)

# Feedback rows the reader takes per read.
READ_BATCH = 1000
# Feedback a stream may have queued before it is told to catch up from the database instead
# (a client that stopped reading must not make the process hold its backlog in memory).
QUEUE_LIMIT = 10_000
_RETRY_SECONDS = 1.0

# (sandbox id or None for every sandbox, institution code or None for every school)
Route = tuple[str | None, str | None]


@dataclass(eq=False)
class Subscription:
    """One stream's queue of feedback handed out by the reader."""

    routes: tuple[Route, ...]
    limit: int = QUEUE_LIMIT
    items: collections.deque[OutboxEntry] = field(default_factory=collections.deque)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when the queue overflowed (and at the start): the stream must catch up from the database.
    behind: bool = True
    # The reader's position when this subscription (re)started to queue: every later feedback is queued.
    since: int = 0

    def offer(self, entry: OutboxEntry) -> None:
        if self.behind:
            return
        if len(self.items) >= self.limit:
            self.items.clear()
            self.behind = True
        else:
            self.items.append(entry)
        self.ready.set()


class FeedbackFanout:
    """The process's one outbox reader and the subscriptions of its open feedback streams."""

    def __init__(self, database: Database, wakeup: LogWakeup, *, queue_limit: int = QUEUE_LIMIT) -> None:
        self._db = database
        self._wakeup = wakeup
        self._queue_limit = queue_limit
        self._routes: dict[Route, set[Subscription]] = collections.defaultdict(set)
        self._reader: asyncio.Task[None] | None = None
        self._started: asyncio.Future[None] | None = None
        # The cursor of the last feedback the reader handed out.
        self._position = 0

    async def _ensure_reader(self) -> None:
        """Starts the reader on first use and waits until it knows where the outbox stands."""
        if self._reader is None or self._reader.done():
            self._started = asyncio.get_running_loop().create_future()
            self._reader = asyncio.create_task(self._read(self._started))
        assert self._started is not None
        await asyncio.shield(self._started)

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None

    async def _read(self, started: asyncio.Future[None]) -> None:
        cursor = -1
        while cursor < 0:
            try:
                cursor = await self._db.run(store.newest_feedback_cursor)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feedback fan-out cannot read the outbox; retrying")
                await asyncio.sleep(_RETRY_SECONDS)
        self._position = cursor
        started.set_result(None)
        while True:
            # Taken before the read, so a commit between the read and the wait is not missed.
            event = self._wakeup.current()
            try:
                rows = await self._db.run(
                    functools.partial(store.routed_feedback_after, after=cursor, limit=READ_BATCH)
                )
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feedback fan-out read failed; retrying")
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            now = dt.datetime.now(dt.UTC)
            for row in rows:
                self._hand_out(row)
                cursor = self._position = row.entry.cursor
                committed = row.entry.committed_at
                committed = committed if committed.tzinfo else committed.replace(tzinfo=dt.UTC)
                telemetry.STREAM_LAG.labels("rod_feedback").observe(max((now - committed).total_seconds(), 0.0))
            if rows:
                # Cursors are handed out in order and never reused: the newest is the outbox's size so far.
                telemetry.OUTBOX_SIZE.labels("rod_feedback").set(cursor)
            if len(rows) < READ_BATCH:
                # One wait per process: woken by this process's commits at once, by other processes'
                # through PostgreSQL LISTEN/NOTIFY, else after the poll interval.
                await self._wakeup.wait(event)

    def _hand_out(self, row: store.RoutedFeedback) -> None:
        for route in (
            (row.sandbox_id, row.institution_code),
            (row.sandbox_id, None),
            (None, row.institution_code),
            (None, None),
        ):
            for subscription in self._routes.get(route, ()):
                subscription.offer(row.entry)

    @contextlib.asynccontextmanager
    async def subscribed(self, sandbox_id: str | None, institution_codes: Sequence[str]) -> AsyncIterator[Subscription]:
        await self._ensure_reader()
        routes = tuple((sandbox_id, code) for code in sorted(set(institution_codes))) or ((sandbox_id, None),)
        subscription = Subscription(routes, self._queue_limit)
        for route in routes:
            self._routes[route].add(subscription)
        try:
            yield subscription
        finally:
            for route in routes:
                subscribers = self._routes.get(route)
                if subscribers is not None:
                    subscribers.discard(subscription)
                    if not subscribers:
                        del self._routes[route]

    def streams(self) -> int:
        """Open subscriptions (for tests and metrics)."""
        return len({s for subscribers in self._routes.values() for s in subscribers})

    async def follow(
        self,
        sandbox_id: str | None,
        institution_codes: Sequence[str],
        after: int,
        read_after: Callable[[int], Awaitable[Sequence[OutboxEntry]]],
    ) -> AsyncIterator[OutboxEntry]:
        """Every feedback of the schools (all when empty) above `after`, in cursor order, then each new one.

        read_after(cursor) reads the next page of the backlog from the database;
        it is called only to catch up. The caller ends the stream by cancelling.
        """
        cursor = after
        async with self.subscribed(sandbox_id, institution_codes) as subscription:
            while True:
                if subscription.behind:
                    subscription.behind = False
                    subscription.items.clear()
                    subscription.since = self._position
                    # Everything above `since` reaches the queue; the database has everything up to it.
                    while cursor < subscription.since:
                        batch = await read_after(cursor)
                        if not batch:
                            break
                        for entry in batch:
                            if entry.cursor > cursor:
                                yield entry
                                cursor = entry.cursor
                while subscription.items and not subscription.behind:
                    entry = subscription.items.popleft()
                    if entry.cursor > cursor:
                        yield entry
                        cursor = entry.cursor
                if not subscription.items and not subscription.behind:
                    subscription.ready.clear()
                    await subscription.ready.wait()
