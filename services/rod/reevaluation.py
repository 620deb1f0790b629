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

from services.common import telemetry
from services.common.database import Claim, Database
from services.common.wakeup import LogWakeup
from services.rod import rules, service, store
from services.rod.peers import ChangeFeeds, Clock, Rio

log = logging.getLogger(__name__)

RIO_STREAM = "rio"
BRP_STREAM = "brp"
# Irrelevant changes only move the cursor; store it after this many so a restart re-reads little.
_CURSOR_FLUSH_EVERY = 500
# Changes handled together: a BRP batch is one transaction.
BATCH = 500
# Pupils re-decided per transaction when the sandbox clock passes a date that matters.
SWEEP_BATCH = 200
_RECONNECT_SECONDS = 1.0
# A change that fails this often on its own is parked (reported and passed), not retried for ever.
PARK_AFTER_TRIES = 3

ChangeT = TypeVar("ChangeT")


class Reevaluator:
    """Follows both peer streams for all sandboxes with the internal token, until stopped."""

    def __init__(
        self,
        database: Database,
        feeds: ChangeFeeds,
        clock: Clock,
        wakeup: LogWakeup,
        rio: Rio,
        brp_behind: Callable[[bool], None] | None = None,
    ) -> None:
        self._db = database
        self._feeds = feeds
        self._clock = clock
        self._rio = rio
        self._wakeup = wakeup
        # Told when BRP's changes queue up faster than they are re-evaluated, and when they no longer do
        # (services.rod.copies.PersonCopy.behind).
        self._brp_behind = brp_behind
        # How often each sandbox's clock is read to see whether its date moved.
        self._sweep_seconds = 2 * wakeup.poll_seconds
        self._tasks: list[asyncio.Task[None]] = []
        # Irrelevant changes read per stream since its cursor was last stored.
        self._pending: dict[str, int] = {}

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(RIO_STREAM, self._feeds.rio_changes, self._handle_rio)),
            asyncio.create_task(
                self._follow(BRP_STREAM, self._feeds.person_changes, self._handle_brp, self._brp_behind)
            ),
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
        handle: Callable[[list[tuple[int, ChangeT]]], Awaitable[None]],
        behind: Callable[[bool], None] | None = None,
    ) -> None:
        """Reads a peer stream from the stored cursor in batches, reconnecting after any failure.

        A pump reads the stream into a queue; each batch is what has arrived
        (up to BATCH changes), so a burst (a BRP day) is handled in few
        transactions and a single change is handled at once. `behind(True)`
        when the queue is full (the stream is no longer read as it comes),
        `behind(False)` once it has been emptied.
        """
        while True:
            pump: asyncio.Task[None] | None = None
            try:
                start = await self._db.run(lambda s: store.stream_cursor(s, stream))
                queue: asyncio.Queue[tuple[int, ChangeT] | BaseException] = asyncio.Queue(maxsize=4 * BATCH)
                pump = asyncio.create_task(_pump(open_stream(start), queue, behind))
                while True:
                    first = await queue.get()
                    if isinstance(first, BaseException):
                        raise first
                    batch = [first]
                    failure: BaseException | None = None
                    while len(batch) < BATCH and not queue.empty():
                        item = queue.get_nowait()
                        if isinstance(item, BaseException):
                            failure = item
                            break
                        batch.append(item)
                    try:
                        await handle(batch)
                    except (asyncio.CancelledError, grpc.aio.AioRpcError):
                        raise
                    except Exception:
                        log.exception("a %s batch failed; handling its changes one at a time", stream)
                        await self._one_at_a_time(stream, handle, batch)
                    if behind is not None and queue.empty():
                        behind(False)
                    if failure is not None:
                        raise failure
            except asyncio.CancelledError:
                raise
            except grpc.aio.AioRpcError as error:
                log.debug("%s stream ended (%s); reconnecting", stream, error.code())
            except Exception:
                log.exception("re-evaluation of the %s stream failed; retrying", stream)
            finally:
                if pump is not None:
                    pump.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await pump
                if behind is not None:
                    behind(False)  # a new stream starts with an empty queue
            await asyncio.sleep(_RECONNECT_SECONDS)

    async def _one_at_a_time(
        self,
        stream: str,
        handle: Callable[[list[tuple[int, ChangeT]]], Awaitable[None]],
        batch: list[tuple[int, ChangeT]],
    ) -> None:
        """Handles each change alone; one that still fails after a few tries is parked: reported and passed.

        A change that cannot be applied (bad data, a bug) would otherwise be
        retried for ever and hold back every later change of every sandbox.
        The tries cover passing trouble (a busy database); a parked change is
        logged with its cursor and sandbox and counted in the
        registry_parked_changes metric.
        """
        for cursor, change in batch:
            for attempt in range(PARK_AFTER_TRIES):
                try:
                    await handle([(cursor, change)])
                    break
                except (asyncio.CancelledError, grpc.aio.AioRpcError):
                    raise
                except Exception:
                    if attempt + 1 < PARK_AFTER_TRIES:
                        await asyncio.sleep(_RECONNECT_SECONDS * (attempt + 1))
                        continue
                    sandbox_id = getattr(change, "sandbox_id", "")
                    log.exception("parked %s change %d of sandbox %s: it keeps failing", stream, cursor, sandbox_id)
                    telemetry.PARKED_CHANGES.labels(stream).inc()
                    await self._db.run(functools.partial(_pass, stream=stream, cursor=cursor))

    async def _todays(self, sandbox_ids: set[str]) -> dict[str, dt.date]:
        """Each sandbox's date, one clock call per sandbox per batch."""
        ordered = sorted(sandbox_ids)
        dates = await asyncio.gather(*(self._clock.today(sandbox_id) for sandbox_id in ordered))
        return dict(zip(ordered, dates, strict=True))

    async def _apply(
        self, stream: str, sandbox_id: str, cursor: int, today: dt.date, apply: Callable[[Session, dt.date], object]
    ) -> None:
        """Applies one change in one transaction with its stream cursor, unless a replica already did."""

        def work(session: Session) -> None:
            store.lock_stream(session, stream)
            if store.stream_cursor(session, stream) >= cursor:
                return
            apply(session, today)
            store.store_stream_cursor(session, stream, cursor)

        await self._db.run(work)
        self._wakeup.notify()

    async def _handle_rio(self, batch: list[tuple[int, rules.RioChanged | None]]) -> None:
        """RIO changes (rare, each may touch many pupils): one transaction per relevant change, one clock per batch."""
        changes = [(cursor, change) for cursor, change in batch if change is not None]
        todays = await self._todays({change.sandbox_id for _, change in changes})
        handled = False
        for _, change in changes:
            today = todays[change.sandbox_id]
            if isinstance(change, rules.OfferingChanged):
                handled = await self._handle_offering(change, today) or handled
            elif isinstance(change, rules.LocationUseChanged):
                handled = await self._handle_location_use(change, today) or handled
            else:
                handled = await self._handle_rio_end(change, today) or handled
        await self._moved(RIO_STREAM, batch[-1][0], handled, len(batch))

    async def _handle_offering(self, change: rules.OfferingChanged, today: dt.date) -> bool:
        taught = await self._db.run(
            lambda s: store.offering_taught(s, sandbox_id=change.sandbox_id, offering_id=change.offering_id)
        )
        if not taught:
            return False
        await self._apply(
            RIO_STREAM, change.sandbox_id, change.cursor, today, lambda s, day: service.offering_changed(s, change, day)
        )
        return True

    async def _moved(self, stream: str, cursor: int, handled: bool, count: int) -> None:
        """Irrelevant changes only move the cursor: stored every _CURSOR_FLUSH_EVERY, so a restart re-reads little."""
        pending = 0 if handled else self._pending.get(stream, 0) + count
        if pending >= _CURSOR_FLUSH_EVERY:
            await self._db.run(lambda s: store.store_stream_cursor(s, stream, cursor))
            pending = 0
        self._pending[stream] = pending

    async def _handle_rio_end(self, change: rules.RioEndChanged, today: dt.date) -> bool:
        """A location's or provider's end (or a change of it): remember it and re-decide the periods there.

        Every end is kept, also of locations and schools without enrolments yet,
        so a later registration there is decided with it too.
        """
        known = await self._db.run(
            lambda s: store.rio_end(s, sandbox_id=change.sandbox_id, kind=change.kind, code=change.code)
        )
        if known == change.end:
            return False
        await self._apply(
            RIO_STREAM, change.sandbox_id, change.cursor, today, lambda s, day: service.rio_end_changed(s, change, day)
        )
        return True

    async def _handle_location_use(self, change: rules.LocationUseChanged, today: dt.date) -> bool:
        """A board's use of a location ended (or changed): keep its end per school of the board, re-decide there.

        RIO's use names the board, ROD's enrolments the school, so RIO is asked
        which schools the board runs (on the use's last day); only their
        periods at the location are touched, never the next board's pupils there.
        Like every end, it is kept also for schools without enrolments there yet.
        """
        schools = await self._rio.board_schools(change.sandbox_id, change.board_code, change.end)
        known = await self._db.run(
            lambda s: store.rio_ends(
                s, change.sandbox_id, rules.LOCATION_USE, {rules.use_key(change.location_code, i) for i in schools}
            )
        )
        if all(known.get(rules.use_key(change.location_code, i)) == change.end for i in schools):
            return False
        await self._apply(
            RIO_STREAM,
            change.sandbox_id,
            change.cursor,
            today,
            lambda s, day: service.location_use_changed(s, change, schools, day),
        )
        return True

    async def _handle_brp(self, batch: list[tuple[int, rules.PersonChanged]]) -> None:
        """A batch of BRP changes in one transaction: one clock call per sandbox, the pupils locked at once.

        Which persons ROD holds is read inside the transaction, under the
        pupils' locks, so a pupil registered while the batch waited is not missed.
        """
        todays = await self._todays({change.sandbox_id for _, change in batch})
        last = batch[-1][0]

        def work(session: Session) -> int:
            store.lock_stream(session, BRP_STREAM)
            stored = store.stream_cursor(session, BRP_STREAM)
            fresh = [change for cursor, change in batch if cursor > stored]
            if not fresh:
                return 0
            by_sandbox: dict[str, set[str]] = {}
            for change in fresh:
                by_sandbox.setdefault(change.sandbox_id, set()).add(change.facts.bsn)
            # Every pupil lock before any feedback is written (the outbox lock comes last), so no circle of waits.
            for sandbox_id in sorted(by_sandbox):
                store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=sorted(by_sandbox[sandbox_id]))
            held = {
                sandbox_id: store.held_pupils(session, sandbox_id=sandbox_id, pupil_numbers=bsns)
                for sandbox_id, bsns in by_sandbox.items()
            }
            relevant = [change for change in fresh if change.facts.bsn in held[change.sandbox_id]]
            service.persons_changed(session, relevant, todays)
            store.store_stream_cursor(session, BRP_STREAM, last)
            return len(relevant)

        if await self._db.run(work):
            self._wakeup.notify()

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
        """Sweeps one sandbox whose date moved, unless another process (a replica, a worker) is sweeping it now.

        Re-deciding twice would send no second feedback (only a changed decision
        is fed back) but would do the work twice; under the claim the stored
        date is read again, so a process that comes second finds the sweep done.
        """
        if await self._db.run(lambda s: store.swept_on(s, sandbox_id=sandbox_id)) == today:
            return 0
        claim = await asyncio.to_thread(Claim.try_take, self._db.engine, f"rod_count_date_sweep:{sandbox_id}")
        if claim is None:
            return 0
        try:
            if await self._db.run(lambda s: store.swept_on(s, sandbox_id=sandbox_id)) == today:
                return 0
            pupils = await self._db.run(lambda s: store.pupils_of_sandbox(s, sandbox_id=sandbox_id))
            for at in range(0, len(pupils), SWEEP_BATCH):
                await self._db.run(
                    functools.partial(
                        service.reevaluate_pupils,
                        sandbox_id=sandbox_id,
                        pupils=pupils[at : at + SWEEP_BATCH],
                        today=today,
                        cause=rules.count_date_cause(today),
                    )
                )
                self._wakeup.notify()
            await self._db.run(lambda s: store.store_swept_on(s, sandbox_id=sandbox_id, day=today))
            return len(pupils)
        finally:
            await asyncio.to_thread(claim.release)


def _pass(session: Session, *, stream: str, cursor: int) -> None:
    """Moves the stream's cursor past a parked change (never back, as a replica may be further)."""
    store.lock_stream(session, stream)
    store.store_stream_cursor(session, stream, cursor)


async def _pump(
    stream: AsyncIterator[tuple[int, ChangeT]],
    queue: asyncio.Queue[tuple[int, ChangeT] | BaseException],
    behind: Callable[[bool], None] | None = None,
) -> None:
    """Reads a peer stream into the queue; its end or failure is queued too, as an exception."""
    try:
        async for item in stream:
            if behind is not None and queue.full():
                behind(True)  # the stream waits for re-evaluation now: its peer may stop waiting for it
            await queue.put(item)
        await queue.put(ConnectionResetError("the stream ended"))
    except asyncio.CancelledError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure is handed to the follower, which logs it and reconnects
        await queue.put(error)
