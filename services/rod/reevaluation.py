"""Re-evaluation: ROD follows RIO's and BRP's change streams and re-decides the enrolments each change touches.

Each relevant change is handled in one transaction that updates ROD's copy
(the pupil's BRP dates, a period's offering end), re-evaluates the pupils
concerned (services.rod.service), writes their feedback and stores the stream
cursor, so a restart resumes exactly after the last change handled and
nothing is handled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import grpc
from sqlmodel import Session

from services.common.database import Database
from services.common.wakeup import LogWakeup
from services.rod import rules, service, store
from services.rod.peers import ChangeFeeds, Clock

log = logging.getLogger(__name__)

RIO_STREAM = "rio"
BRP_STREAM = "brp"
# Irrelevant changes only move the cursor; store it after this many so a restart re-reads little.
_CURSOR_FLUSH_EVERY = 500
_RECONNECT_SECONDS = 1.0

ChangeT = TypeVar("ChangeT")


class Reevaluator:
    """Follows both peer streams for all sandboxes with the internal token, until stopped."""

    def __init__(self, database: Database, feeds: ChangeFeeds, clock: Clock, wakeup: LogWakeup) -> None:
        self._db = database
        self._feeds = feeds
        self._clock = clock
        self._wakeup = wakeup
        # How often each sandbox's clock is read to see whether its date moved.
        self._sweep_seconds = 2 * wakeup.poll_seconds
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(RIO_STREAM, self._feeds.rio_changes, self._handle_rio)),
            asyncio.create_task(self._follow(BRP_STREAM, self._feeds.person_changes, self._handle_brp)),
            asyncio.create_task(self._sweep_count_dates()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def _follow(
        self,
        stream: str,
        open_stream: Callable[[int], AsyncIterator[tuple[int, ChangeT]]],
        handle: Callable[[ChangeT], Awaitable[bool]],
    ) -> None:
        """Reads a peer stream from the stored cursor, reconnecting after any failure."""
        while True:
            try:
                start = await self._db.run(lambda s: store.stream_cursor(s, stream))
                pending = 0
                async for cursor, change in open_stream(start):
                    handled = await handle(change)
                    pending += 1
                    if not handled and pending >= _CURSOR_FLUSH_EVERY:
                        await self._store_cursor(stream, cursor)
                        pending = 0
                    elif handled:
                        pending = 0
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.debug("%s stream ended (%s); reconnecting", stream, error.code())
            except Exception:
                log.exception("re-evaluation of the %s stream failed; retrying", stream)
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _store_cursor(self, stream: str, cursor: int) -> None:
        await self._db.run(lambda s: store.store_stream_cursor(s, stream, cursor))

    async def _apply(
        self, stream: str, sandbox_id: str, cursor: int, apply: Callable[[Session, dt.date], object]
    ) -> bool:
        """Applies one change in one transaction with its stream cursor, unless a replica already did."""
        today = await self._clock.today(sandbox_id)

        def work(session: Session) -> None:
            store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=[])
            if store.stream_cursor(session, stream) >= cursor:
                return
            apply(session, today)
            store.store_stream_cursor(session, stream, cursor)

        await self._db.run(work)
        self._wakeup.notify()
        return True

    async def _handle_rio(self, change: rules.OfferingChanged | rules.RioEndChanged | None) -> bool:
        if isinstance(change, rules.OfferingChanged):
            taught = await self._db.run(
                lambda s: store.offering_taught(s, sandbox_id=change.sandbox_id, offering_id=change.offering_id)
            )
            if not taught:
                return False
            return await self._apply(
                RIO_STREAM,
                change.sandbox_id,
                change.cursor,
                lambda s, today: service.offering_changed(s, change, today),
            )
        if isinstance(change, rules.RioEndChanged):
            return await self._handle_rio_end(change)
        return False

    async def _handle_rio_end(self, change: rules.RioEndChanged) -> bool:
        """A location's or provider's end (or a change of it): remember it and re-decide the periods there.

        Every end is kept, also of locations and schools without enrolments yet,
        so a later registration there is decided with it too.
        """
        known = await self._db.run(
            lambda s: store.rio_end(s, sandbox_id=change.sandbox_id, kind=change.kind, code=change.code)
        )
        if known == change.end:
            return False
        return await self._apply(
            RIO_STREAM, change.sandbox_id, change.cursor, lambda s, today: service.rio_end_changed(s, change, today)
        )

    async def _handle_brp(self, change: rules.PersonChanged) -> bool:
        bsn = change.facts.bsn
        known = await self._db.run(
            lambda s: store.find_pupil(s, sandbox_id=change.sandbox_id, pupil_number=bsn) is not None
        )
        if not known:
            return False
        return await self._apply(
            BRP_STREAM, change.sandbox_id, change.cursor, lambda s, today: service.person_changed(s, change, today)
        )

    async def _sweep_count_dates(self) -> None:
        while True:
            try:
                await self.sweep_count_dates()
            except asyncio.CancelledError:
                raise
            except Exception:  # a failed sweep is retried; it must not stop the sweeps for good
                log.exception("count date sweep failed; retrying")
            await asyncio.sleep(self._sweep_seconds)

    async def sweep_count_dates(self) -> int:
        """Re-evaluates every pupil of each sandbox whose date moved since the last sweep; returns pupils done.

        When a sandbox's clock passes the end of a correction window, its
        decisions become final (V to D); when it passes a count date, open
        enrolments are decided for the next one. Either changes the decision,
        so the schools get feedback with trigger COUNT_DATE.
        """
        done = 0
        for sandbox_id in await self._db.run(store.sandboxes_with_enrolments):
            try:
                today = await self._clock.today(sandbox_id)
            except grpc.aio.AioRpcError:
                continue
            done += await self._sweep_sandbox(sandbox_id, today)
        return done

    async def _sweep_sandbox(self, sandbox_id: str, today: dt.date) -> int:
        if await self._db.run(lambda s: store.swept_on(s, sandbox_id=sandbox_id)) == today:
            return 0
        pupils = await self._db.run(lambda s: store.pupils_of_sandbox(s, sandbox_id=sandbox_id))
        for pupil in pupils:
            await self._db.run(
                functools.partial(
                    service.reevaluate_pupils,
                    sandbox_id=sandbox_id,
                    pupils=[pupil],
                    today=today,
                    cause=rules.count_date_cause(today),
                )
            )
            self._wakeup.notify()
        await self._db.run(lambda s: store.store_swept_on(s, sandbox_id=sandbox_id, day=today))
        return len(pupils)
