"""Re-evaluation: ROD follows RIO's and BRP's change streams and re-decides the enrolments each change touches.

Each relevant change is handled in one transaction that updates ROD's copy
(the pupil's BRP dates, a period's offering end), re-evaluates the pupils
concerned, writes their feedback and stores the stream cursor, so a restart
resumes exactly after the last change handled and nothing is handled twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from sqlmodel import Session, select

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, rio_pb2, rio_pb2_grpc, rod_pb2
from services.common.caller import internal_metadata
from services.common.database import Database
from services.common.dates import from_proto_date
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.wakeup import LogWakeup
from services.rod import store
from services.rod.store import FOLLOWER
from services.rod.tables import RodEnrolment, RodEnrolmentPeriod

log = logging.getLogger(__name__)

RIO_STREAM = "rio"
BRP_STREAM = "brp"
# Irrelevant changes only move the cursor; store it after this many so a restart re-reads little.
_CURSOR_FLUSH_EVERY = 500
_RECONNECT_SECONDS = 1.0


def offering_end_for(period: RodEnrolmentPeriod, offering_end: dt.date | None) -> dt.date | None:
    """The offering end that matters for a period: only one before the period's own end."""
    if offering_end is None or (period.end_date is not None and offering_end >= period.end_date):
        return None
    return offering_end


def rio_cause(cursor: int) -> store.Cause:
    return store.Cause(rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE, cause_id=f"rio:{cursor}")


def apply_offering_change(
    session: Session,
    *,
    sandbox_id: str,
    offering_id: str,
    offering_end: dt.date | None,
    today: dt.date,
    cause_cursor: int,
) -> int:
    """Records an offering's end on every period taught in it and re-evaluates their pupils; returns how many."""
    periods = session.exec(
        select(RodEnrolmentPeriod).where(
            RodEnrolmentPeriod.sandbox_id == sandbox_id, RodEnrolmentPeriod.offering_id == offering_id
        )
    ).all()
    touched = {p.enrolment_id for p in periods}
    owners = [e.pupil_number for e in (session.get(RodEnrolment, eid) for eid in touched) if e is not None]
    store.lock_pupils(session, sandbox_id=sandbox_id, pupil_numbers=owners)
    pupils: set[str] = set()
    for period in periods:
        new_end = offering_end_for(period, offering_end)
        if new_end == period.offering_end_date:
            continue
        period.offering_end_date = new_end
        session.add(period)
        enrolment = session.get(RodEnrolment, period.enrolment_id)
        if enrolment is not None:
            pupils.add(enrolment.pupil_number)
    session.flush()
    _reevaluate(session, sandbox_id=sandbox_id, pupils=sorted(pupils), today=today, cause=rio_cause(cause_cursor))
    return len(pupils)


def _reevaluate(session: Session, *, sandbox_id: str, pupils: list[str], today: dt.date, cause: store.Cause) -> None:
    for pupil in pupils:
        store.reevaluate_pupil(session, sandbox_id=sandbox_id, pupil_number=pupil, today=today, cause=cause)


class Reevaluator:
    """Follows both peer streams for all sandboxes with the internal token, until stopped."""

    def __init__(
        self, database: Database, peers: Peers, internal_token: str, sandboxes: SandboxClient, wakeup: LogWakeup
    ) -> None:
        self._db = database
        self._peers = peers
        self._token = internal_token
        self._sandboxes = sandboxes
        self._wakeup = wakeup
        # How often each sandbox's clock is read to see whether its date moved.
        self._sweep_seconds = 2 * wakeup.poll_seconds
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._follow(RIO_STREAM, self._rio_changes, self._handle_rio)),
            asyncio.create_task(self._follow(BRP_STREAM, self._brp_changes, self._handle_brp)),
            asyncio.create_task(self._sweep_count_dates()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def _rio_changes(self, after: int) -> AsyncIterator[rio_pb2.RioChange]:
        stub = rio_pb2_grpc.RioServiceStub(self._peers.channel("rio"))
        call: AsyncIterator[rio_pb2.RioChange] = stub.StreamChanges(
            rio_pb2.StreamChangesRequest(after_cursor=after), metadata=internal_metadata(self._token, None)
        )
        return call

    def _brp_changes(self, after: int) -> AsyncIterator[brp_pb2.PersonChange]:
        stub = brp_pb2_grpc.BrpServiceStub(self._peers.channel("brp"))
        call: AsyncIterator[brp_pb2.PersonChange] = stub.StreamPersonChanges(
            brp_pb2.StreamPersonChangesRequest(after_cursor=after, subscriber=FOLLOWER),
            metadata=internal_metadata(self._token, None),
        )
        return call

    async def _follow(
        self,
        stream: str,
        open_stream: Callable[[int], AsyncIterator[Any]],
        handle: Callable[[Any], Awaitable[bool]],
    ) -> None:
        """Reads a peer stream from the stored cursor, reconnecting after any failure."""
        while True:
            try:
                cursor = await self._db.run(lambda s: store.stream_cursor(s, stream))
                pending = 0
                async for change in open_stream(cursor):
                    handled = await handle(change)
                    cursor = change.cursor
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

    async def _handle_rio(self, change: rio_pb2.RioChange) -> bool:
        record = change.WhichOneof("record")
        if record in ("location", "provider"):
            return await self._handle_rio_end(change)
        # A new offering has no enrolments yet; only a changed or ended one can alter a decision.
        if record != "course_offering" or change.change_kind == rio_pb2.RIO_CHANGE_KIND_CREATED:
            return False
        offering = change.course_offering
        end = from_proto_date(offering.validity.end_date)
        known = await self._db.run(
            lambda s: s.exec(
                select(RodEnrolmentPeriod.id).where(
                    RodEnrolmentPeriod.sandbox_id == change.sandbox_id,
                    RodEnrolmentPeriod.offering_id == offering.offering_id,
                )
            ).first()
        )
        if known is None:
            return False
        today = await self._sandboxes.today(change.sandbox_id)

        def work(session: Session) -> None:
            store.lock_pupils(session, sandbox_id=change.sandbox_id, pupil_numbers=[])
            if store.stream_cursor(session, RIO_STREAM) >= change.cursor:
                return
            apply_offering_change(
                session,
                sandbox_id=change.sandbox_id,
                offering_id=offering.offering_id,
                offering_end=end,
                today=today,
                cause_cursor=change.cursor,
            )
            store.store_stream_cursor(session, RIO_STREAM, change.cursor)

        await self._db.run(work)
        self._wakeup.notify()
        return True

    async def _handle_rio_end(self, change: rio_pb2.RioChange) -> bool:
        """A location's or provider's end (or a change of it): remember it and re-decide the periods there.

        Every end is kept, also of locations and schools without enrolments yet,
        so a later registration there is decided with it too.
        """
        if change.WhichOneof("record") == "location":
            kind, code = store.LOCATION, change.location.location_code
            end = from_proto_date(change.location.validity.end_date)
        else:
            kind, code = store.PROVIDER, change.provider.institution_code
            end = from_proto_date(change.provider.validity.end_date)
        if not code:
            return False
        known = await self._db.run(lambda s: store.rio_end(s, sandbox_id=change.sandbox_id, kind=kind, code=code))
        if known == end:
            return False
        today = await self._sandboxes.today(change.sandbox_id)

        def work(session: Session) -> None:
            store.lock_pupils(session, sandbox_id=change.sandbox_id, pupil_numbers=[])
            if store.stream_cursor(session, RIO_STREAM) >= change.cursor:
                return
            store.store_rio_end(session, sandbox_id=change.sandbox_id, kind=kind, code=code, end=end)
            pupils = store.pupils_at(session, sandbox_id=change.sandbox_id, kind=kind, code=code)
            store.lock_pupils(session, sandbox_id=change.sandbox_id, pupil_numbers=pupils)
            _reevaluate(
                session,
                sandbox_id=change.sandbox_id,
                pupils=pupils,
                today=today,
                cause=rio_cause(change.cursor),
            )
            store.store_stream_cursor(session, RIO_STREAM, change.cursor)

        await self._db.run(work)
        self._wakeup.notify()
        return True

    async def _handle_brp(self, change: brp_pb2.PersonChange) -> bool:
        bsn = change.bsn or change.person.bsn
        known = await self._db.run(
            lambda s: store.find_pupil(s, sandbox_id=change.sandbox_id, pupil_number=bsn) is not None
        )
        if not known:
            return False
        facts = store.brp_facts(change.person, bsn=bsn, sequence=change.sequence)
        today = await self._sandboxes.today(change.sandbox_id)

        def work(session: Session) -> None:
            store.lock_pupils(session, sandbox_id=change.sandbox_id, pupil_numbers=[bsn])
            if store.stream_cursor(session, BRP_STREAM) >= change.cursor:
                return
            if store.store_brp_facts(session, sandbox_id=change.sandbox_id, facts=facts, create=False):
                _reevaluate(
                    session,
                    sandbox_id=change.sandbox_id,
                    pupils=[bsn],
                    today=today,
                    cause=store.Cause(rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE, cause_id=change.message_id),
                )
            store.store_stream_cursor(session, BRP_STREAM, change.cursor)

        await self._db.run(work)
        self._wakeup.notify()
        return True

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
                today = await self._sandboxes.today(sandbox_id)
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
                    _reevaluate,
                    sandbox_id=sandbox_id,
                    pupils=[pupil],
                    today=today,
                    cause=store.Cause(rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE, cause_id=f"teldatum:{today.isoformat()}"),
                )
            )
            self._wakeup.notify()
        await self._db.run(lambda s: store.store_swept_on(s, sandbox_id=sandbox_id, day=today))
        return len(pupils)
