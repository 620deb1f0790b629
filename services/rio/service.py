"""RIO's use cases, one method per operation: who may, which date, which rules, what is stored and logged.

A change runs through `write`, the caller's mutation path (one transaction
with its idempotent answer and write lock); the use case gives it the work
and gets back whatever the caller made of the work's result. Reads run in a
transaction of their own. The sandbox clock is asked before any transaction,
and only when a date was left out (the default peildatum is today).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc
from sqlmodel import Session, SQLModel

from services.common.caller import Caller
from services.common.clock import real_now
from services.common.database import Database
from services.common.errors import (
    NOT_FOUND,
    FieldViolation,
    RegistryError,
    failed_precondition,
    invalid_argument,
    not_found,
)
from services.common.identifiers import format_institution_code, format_rio_code
from services.common.paging import Page
from services.common.seeding import PROFILES
from services.common.wakeup import Follower, LogWakeup, follow_log
from services.rio import rules, seed, store
from services.rio.peers import Sandboxes
from services.rio.rules import Address, ChangeKind, CodeSystem, RecordKind, Sector
from services.rio.store import OfferingFacts
from services.rio.tables import (
    RioBoard,
    RioChangeEntry,
    RioCourse,
    RioCourseOffering,
    RioLocation,
    RioLocationUse,
    RioProvider,
    RioSeedRun,
)

Row = TypeVar("Row")
Answer = TypeVar("Answer")
T = TypeVar("T")
Record = RioBoard | RioProvider | RioLocation | RioCourse | RioCourseOffering | RioLocationUse
# The records with a validity period that an owner can end.
Ended = TypeVar("Ended", RioProvider, RioLocation, RioCourse, RioCourseOffering, RioLocationUse)

# Runs a change's work once per idempotency key in the register's write transaction; see MutationPath.run.
Write = Callable[[Callable[[Session], Row]], Awaitable[Answer]]

# The register's "changed since" answers hold at most 500 items (DUO's RIO changes feed).
MAX_CHANGES_PER_ANSWER = 500
# Entries one stream read fetches; small enough to start sending quickly.
STREAM_BATCH = 500


class StoredForm(Protocol):
    """How a record and a seed's counts are kept as bytes: the contract's messages (codec.py implements it)."""

    def record_bytes(self, row: Record) -> bytes: ...

    def seed_counts_bytes(self, counts: dict[str, int]) -> bytes: ...

    def seed_counts(self, data: bytes) -> dict[str, int]: ...


# --- Commands and queries (what the codec decodes a request into) ---


@dataclass(frozen=True)
class NewBoard:
    board_code: str  # empty: the register assigns the next free code
    name: str
    kvk_number: str
    begin: dt.date | None  # None: the sandbox's today


@dataclass(frozen=True)
class NewProvider:
    provider_code: str  # empty: assigned
    board_code: str  # empty: the acting board
    institution_code: str  # empty: a free one is assigned
    name: str
    sector: Sector
    begin: dt.date | None
    end: dt.date | None


@dataclass(frozen=True)
class NewLocation:
    location_code: str
    board_code: str
    name: str
    address: Address
    begin: dt.date | None
    end: dt.date | None


@dataclass(frozen=True)
class NewLocationUse:
    """Onderwijslocatiegebruik: a board starts using a location."""

    location_code: str
    board_code: str  # empty: the acting board
    begin: dt.date | None
    end: dt.date | None


@dataclass(frozen=True)
class NewVersion:
    """A correction from a date on: a new version with a new name (empty keeps it) or address (None keeps it)."""

    code: str
    effective: dt.date | None
    name: str
    address: Address | None = None


@dataclass(frozen=True)
class NewCourse:
    course_code: str  # the national code (CREBO, ISAT, ILT, po)
    code_system: CodeSystem
    sector: Sector | None  # None: the code system's sector
    name: str
    level: str
    begin: dt.date | None
    end: dt.date | None
    unit_code: str = ""  # opleidingseenheidcode; empty: the register assigns the next free one


@dataclass(frozen=True)
class NewOffering:
    provider_code: str
    course_code: str
    location_code: str
    begin: dt.date | None
    end: dt.date | None


@dataclass(frozen=True)
class EndRecord:
    code: str
    end: dt.date | None


@dataclass(frozen=True)
class RecordOn:
    """One record as of a peildatum."""

    code: str
    day: dt.date | None


@dataclass(frozen=True)
class BoardsQuery:
    page: Page


@dataclass(frozen=True)
class ProvidersQuery:
    day: dt.date | None
    board_code: str
    institution_code: str
    sector: int
    page: Page


@dataclass(frozen=True)
class LocationsQuery:
    day: dt.date | None
    board_code: str
    page: Page
    # Only locations where this provider has an offering on the day ("" for all).
    provider_code: str = ""


@dataclass(frozen=True)
class LocationUsesQuery:
    location_code: str
    board_code: str
    day: dt.date | None
    all_periods: bool
    page: Page


@dataclass(frozen=True)
class CoursesQuery:
    day: dt.date | None
    sector: int
    page: Page


@dataclass(frozen=True)
class OfferingsQuery:
    day: dt.date | None
    provider_code: str
    location_code: str
    course_code: str
    page: Page


@dataclass(frozen=True)
class OfferingQuestion:
    """ROD's question for every enrolment: did this school offer this course at this location on the day?"""

    institution_code: str
    course_code: str
    location_code: str
    day: dt.date | None


@dataclass(frozen=True)
class ChangesQuery:
    after: int
    limit: int


@dataclass(frozen=True)
class SeedOrder:
    size: str
    seed: int


@dataclass(frozen=True)
class PurgeOrder:
    """Purge everything of the caller's sandbox (its idempotency key is all a purge request carries)."""


@dataclass(frozen=True)
class Listed(Generic[T]):
    """One page of a list: rows read with limit page.size + 1 (the extra one says more are waiting)."""

    rows: Sequence[T]
    page: Page


@dataclass(frozen=True)
class ChangesRead:
    entries: Sequence[RioChangeEntry]
    after: int
    limit: int


@dataclass(frozen=True)
class OfferingCheck:
    decision: rules.OfferingDecision
    facts: OfferingFacts


def already_exists(field: str, what: str) -> RegistryError:
    return RegistryError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"{what} already exists",
        rules.RECORD_EXISTS,
        (FieldViolation(field, f"{what} already exists", rules.RECORD_EXISTS),),
    )


_LOGGED: dict[type[SQLModel], tuple[RecordKind, str]] = {
    RioBoard: (RecordKind.BOARD, "board_code"),
    RioProvider: (RecordKind.PROVIDER, "provider_code"),
    RioLocation: (RecordKind.LOCATION, "location_code"),
    RioCourse: (RecordKind.COURSE, "course_code"),
    RioCourseOffering: (RecordKind.COURSE_OFFERING, "offering_id"),
    RioLocationUse: (RecordKind.LOCATION_USE, "use_id"),
}


class RioService:
    """The RIO register's operations. `stored` keeps records in the change log as the contract's bytes."""

    def __init__(self, database: Database, sandboxes: Sandboxes, stored: StoredForm, wakeup: LogWakeup) -> None:
        self._db = database
        self._sandboxes = sandboxes
        self._stored = stored
        self.wakeup = wakeup
        # A seed plans for seconds; concurrent seeds in this process queue so only the first one plans.
        self._seeding = asyncio.Lock()

    # --- plumbing ---

    async def _on(self, sandbox_id: str, day: dt.date | None) -> dt.date:
        """The given date, or the sandbox clock's today (the default peildatum)."""
        return day if day is not None else await self._sandboxes.today(sandbox_id)

    def _log(self, session: Session, sandbox_id: str, change: ChangeKind, row: Record) -> Record:
        """Appends the change to the log, holding the record after it; in the change's own transaction."""
        kind, code_field = _LOGGED[type(row)]
        code = str(getattr(row, code_field))
        record = self._stored.record_bytes(row)
        store.append_change(
            session, sandbox_id=sandbox_id, record_kind=kind, change_kind=change, code=code, record=record
        )
        return row

    def _end(self, session: Session, sandbox_id: str, row: Ended, end: dt.date) -> Ended:
        """Sets a record version's einddatum (the rules check it) and logs the ENDED change."""
        row.end_date = rules.plan_end(rules.period_of(row), end).end
        store.add(session, row)
        self._log(session, sandbox_id, ChangeKind.ENDED, row)
        return row

    async def _read(self, work: Callable[[Session], T]) -> T:
        return await self._db.run(work)

    # --- Boards ---

    async def create_board(self, caller: Caller, command: NewBoard, write: Write[RioBoard, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        rules.require_admin(caller.board_code, "create school boards")
        begin = await self._on(sandbox_id, command.begin)

        def work(session: Session) -> RioBoard:
            code = command.board_code
            if code and store.board(session, sandbox_id, code) is not None:
                raise already_exists("board_code", f"board {code}")
            code = code or self._next_code(session, "board", RioBoard, "board_code", sandbox_id)
            row = RioBoard(
                sandbox_id=sandbox_id,
                board_code=code,
                name=command.name,
                kvk_number=command.kvk_number,
                begin_date=begin,
            )
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, row))
            return row

        return await write(work)

    async def get_board(self, caller: Caller, board_code: str) -> RioBoard:
        sandbox_id = caller.require_sandbox()

        def work(session: Session) -> RioBoard:
            row = store.board(session, sandbox_id, board_code)
            if row is None:
                raise not_found(f"board {board_code}", "board_code", rules.RECORD_NOT_FOUND)
            return row

        return await self._read(work)

    async def list_boards(self, caller: Caller, query: BoardsQuery) -> Listed[RioBoard]:
        sandbox_id = caller.require_sandbox()
        rows = await self._read(lambda s: store.boards(s, sandbox_id=sandbox_id, page=query.page))
        return Listed(rows, query.page)

    @staticmethod
    def _next_code(session: Session, kind: str, model: type[SQLModel], code_field: str, sandbox_id: str) -> str:
        highest = store.highest_code(session, model, code_field, sandbox_id)
        return format_rio_code(kind, rules.next_rio_number(kind, [highest] if highest else []))

    # --- Providers (onderwijsaanbieders) ---

    async def create_provider(self, caller: Caller, command: NewProvider, write: Write[RioProvider, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        board_code = _acting_board(caller, command.board_code)
        period = rules.period(await self._on(sandbox_id, command.begin), command.end)

        def work(session: Session) -> RioProvider:
            if store.board(session, sandbox_id, board_code) is None:
                raise not_found(f"board {board_code}", "board_code", rules.RECORD_NOT_FOUND)
            code = command.provider_code
            if code and store.latest(session, RioProvider, "provider_code", sandbox_id, code) is not None:
                raise already_exists("provider_code", f"provider {code}")
            code = code or self._next_code(session, "provider", RioProvider, "provider_code", sandbox_id)
            institution = command.institution_code
            if institution:
                same_code = store.providers_with_institution(session, sandbox_id, institution)
                clash = rules.first_overlap(same_code, period)
                if clash is not None:
                    raise invalid_argument(
                        [
                            FieldViolation(
                                "institution_code",
                                f"{institution} is already used by provider {clash.provider_code} in an "
                                "overlapping period",
                                rules.PERIOD_OVERLAP,
                            )
                        ]
                    )
            else:
                institution = _free_institution_code(store.institution_codes(session, sandbox_id))
            row = RioProvider(
                sandbox_id=sandbox_id,
                provider_code=code,
                version=1,
                board_code=board_code,
                institution_code=institution,
                name=command.name,
                sector=command.sector,
                begin_date=period.begin,
                end_date=period.end,
            )
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, row))
            return row

        return await write(work)

    async def update_provider(self, caller: Caller, command: NewVersion, write: Write[RioProvider, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        effective = await self._on(sandbox_id, command.effective)

        def work(session: Session) -> RioProvider:
            current = store.latest(session, RioProvider, "provider_code", sandbox_id, command.code)
            if current is None:
                raise not_found(f"provider {command.code}", "provider_code", rules.RECORD_NOT_FOUND)
            rules.require_owner(caller.board_code, current.board_code)
            plan = rules.plan_new_version(rules.period_of(current), effective)
            current.end_date = plan.current.end
            store.add(session, current)
            row = RioProvider(
                sandbox_id=sandbox_id,
                provider_code=command.code,
                version=current.version + 1,
                board_code=current.board_code,
                institution_code=current.institution_code,
                name=command.name or current.name,
                sector=current.sector,
                begin_date=plan.new.begin,
                end_date=plan.new.end,
            )
            self._log(session, sandbox_id, ChangeKind.UPDATED, store.add(session, row))
            return row

        return await write(work)

    async def end_provider(self, caller: Caller, command: EndRecord, write: Write[RioProvider, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        end = await self._on(sandbox_id, command.end)

        def work(session: Session) -> RioProvider:
            current = store.latest(session, RioProvider, "provider_code", sandbox_id, command.code)
            if current is None:
                raise not_found(f"provider {command.code}", "code", rules.RECORD_NOT_FOUND)
            rules.require_owner(caller.board_code, current.board_code)
            return self._end(session, sandbox_id, current, end)

        return await write(work)

    async def get_provider(self, caller: Caller, query: RecordOn) -> RioProvider:
        return await self._record_on(caller, query, RioProvider, "provider_code", "provider", NOT_FOUND)

    async def list_providers(self, caller: Caller, query: ProvidersQuery) -> Listed[RioProvider]:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)
        rows = await self._read(
            lambda s: store.providers(
                s,
                sandbox_id=sandbox_id,
                day=day,
                board_code=query.board_code,
                institution_code=query.institution_code,
                sector=query.sector,
                page=query.page,
            )
        )
        return Listed(rows, query.page)

    async def _record_on(
        self, caller: Caller, query: RecordOn, model: type[Ended], code_field: str, what: str, reason: str
    ) -> Ended:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)

        def work(session: Session) -> Ended:
            row = store.as_of(session, model, code_field, sandbox_id, query.code, day)
            if row is None:
                raise not_found(f"{what} {query.code} on {day}", "code", reason)
            return row

        return await self._read(work)

    # --- Locations (onderwijslocaties) ---

    async def create_location(self, caller: Caller, command: NewLocation, write: Write[RioLocation, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        board_code = _acting_board(caller, command.board_code)
        period = rules.period(await self._on(sandbox_id, command.begin), command.end)

        def work(session: Session) -> RioLocation:
            if store.board(session, sandbox_id, board_code) is None:
                raise not_found(f"board {board_code}", "board_code", rules.RECORD_NOT_FOUND)
            code = command.location_code
            if code and store.latest(session, RioLocation, "location_code", sandbox_id, code) is not None:
                raise already_exists("location_code", f"location {code}")
            code = code or self._next_code(session, "location", RioLocation, "location_code", sandbox_id)
            row = RioLocation(
                sandbox_id=sandbox_id,
                location_code=code,
                version=1,
                board_code=board_code,
                name=command.name,
                begin_date=period.begin,
                end_date=period.end,
                **_address_columns(command.address),
            )
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, row))
            # The registering board uses its new location for the location's whole period.
            use = _new_use(sandbox_id, code, board_code, period)
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, use))
            return row

        return await write(work)

    async def update_location(self, caller: Caller, command: NewVersion, write: Write[RioLocation, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        effective = await self._on(sandbox_id, command.effective)

        def work(session: Session) -> RioLocation:
            current = store.latest(session, RioLocation, "location_code", sandbox_id, command.code)
            if current is None:
                raise not_found(f"location {command.code}", "location_code", rules.LOCATION_UNKNOWN)
            uses = store.location_uses(session, sandbox_id, command.code)
            rules.require_user(caller.board_code, rules.responsible_board(uses, effective), effective)
            plan = rules.plan_new_version(rules.period_of(current), effective)
            current.end_date = plan.current.end
            store.add(session, current)
            address = command.address or _address_of(current)
            row = RioLocation(
                sandbox_id=sandbox_id,
                location_code=command.code,
                version=current.version + 1,
                board_code=current.board_code,
                name=command.name or current.name,
                begin_date=plan.new.begin,
                end_date=plan.new.end,
                **_address_columns(address),
            )
            self._log(session, sandbox_id, ChangeKind.UPDATED, store.add(session, row))
            return row

        return await write(work)

    async def end_location(self, caller: Caller, command: EndRecord, write: Write[RioLocation, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        end = await self._on(sandbox_id, command.end)

        def work(session: Session) -> RioLocation:
            current = store.latest(session, RioLocation, "location_code", sandbox_id, command.code)
            if current is None:
                raise not_found(f"location {command.code}", "code", rules.LOCATION_UNKNOWN)
            uses = store.location_uses(session, sandbox_id, command.code)
            rules.require_user(caller.board_code, rules.responsible_board(uses, end), end)
            ended = self._end(session, sandbox_id, current, end)
            # A use cannot outlast its location: one running past the end ends with it.
            for use in uses:
                if use.begin_date <= end and (use.end_date is None or use.end_date > end):
                    self._end(session, sandbox_id, use, end)
            return ended

        return await write(work)

    # --- Location use (onderwijslocatiegebruik) ---

    @staticmethod
    def _refuse_clash(violations: list[FieldViolation]) -> None:
        """Another board's use is the register's state (FAILED_PRECONDITION); a double use of one board is a
        request that contradicts itself (INVALID_ARGUMENT)."""
        if any(v.code == rules.LOCATION_IN_USE for v in violations):
            raise failed_precondition(violations)
        if violations:
            raise invalid_argument(violations)

    async def create_location_use(
        self, caller: Caller, command: NewLocationUse, write: Write[RioLocationUse, Answer]
    ) -> Answer:
        """Checks: the board exists, the location lives through the use (A01060), nobody else uses it then."""
        sandbox_id = caller.require_sandbox()
        board_code = _acting_board(caller, command.board_code)
        period = rules.period(await self._on(sandbox_id, command.begin), command.end)

        def work(session: Session) -> RioLocationUse:
            if store.board(session, sandbox_id, board_code) is None:
                raise not_found(f"board {board_code}", "board_code", rules.RECORD_NOT_FOUND)
            span = store.location_span(session, sandbox_id, command.location_code)
            if span is None:
                raise not_found(f"location {command.location_code}", "location_code", rules.LOCATION_UNKNOWN)
            outside = rules.check_use_within_location(span, period)
            if outside:
                raise invalid_argument(outside)
            clash = rules.check_new_use(
                store.location_uses(session, sandbox_id, command.location_code), board_code, period
            )
            self._refuse_clash(clash)
            use = _new_use(sandbox_id, command.location_code, board_code, period)
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, use))
            return use

        return await write(work)

    async def end_location_use(
        self, caller: Caller, command: EndRecord, write: Write[RioLocationUse, Answer]
    ) -> Answer:
        sandbox_id = caller.require_sandbox()
        end = await self._on(sandbox_id, command.end)

        def work(session: Session) -> RioLocationUse:
            use = store.location_use(session, sandbox_id, command.code)
            if use is None:
                raise not_found(f"location use {command.code}", "code", rules.RECORD_NOT_FOUND)
            rules.require_owner(caller.board_code, use.board_code)
            # A later einddatum lengthens the use: it may not outlast the location nor reach another's use.
            period = rules.Period(use.begin_date, end)
            span = store.location_span(session, sandbox_id, use.location_code)
            if span is not None and (outside := rules.check_use_within_location(span, period)):
                raise invalid_argument(outside)
            others = [u for u in store.location_uses(session, sandbox_id, use.location_code) if u.use_id != use.use_id]
            self._refuse_clash(rules.check_new_use(others, use.board_code, period, field="end_date"))
            return self._end(session, sandbox_id, use, end)

        return await write(work)

    async def list_location_uses(self, caller: Caller, query: LocationUsesQuery) -> Listed[RioLocationUse]:
        sandbox_id = caller.require_sandbox()
        day = None if query.all_periods else await self._on(sandbox_id, query.day)
        rows = await self._read(
            lambda s: store.uses(
                s,
                sandbox_id=sandbox_id,
                day=day,
                location_code=query.location_code,
                board_code=query.board_code,
                page=query.page,
            )
        )
        return Listed(rows, query.page)

    async def get_location(self, caller: Caller, query: RecordOn) -> RioLocation:
        return await self._record_on(caller, query, RioLocation, "location_code", "location", rules.LOCATION_UNKNOWN)

    async def list_locations(self, caller: Caller, query: LocationsQuery) -> Listed[RioLocation]:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)
        rows = await self._read(
            lambda s: store.locations(
                s,
                sandbox_id=sandbox_id,
                day=day,
                board_code=query.board_code,
                provider_code=query.provider_code,
                page=query.page,
            )
        )
        return Listed(rows, query.page)

    # --- Courses (opleidingen in the national catalogue) ---

    async def create_course(self, caller: Caller, command: NewCourse, write: Write[RioCourse, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        rules.require_admin(caller.board_code, "add courses to the national catalogue")
        sector = rules.course_sector(command.code_system, command.sector, command.level)
        period = rules.period(await self._on(sandbox_id, command.begin), command.end)

        def work(session: Session) -> RioCourse:
            if store.latest(session, RioCourse, "course_code", sandbox_id, command.course_code) is not None:
                raise already_exists("course_code", f"course {command.course_code}")
            unit = command.unit_code
            if unit and store.latest(session, RioCourse, "unit_code", sandbox_id, unit) is not None:
                raise already_exists("unit_code", f"course unit {unit}")
            row = RioCourse(
                sandbox_id=sandbox_id,
                course_code=command.course_code,
                unit_code=unit or self._next_code(session, "course_unit", RioCourse, "unit_code", sandbox_id),
                version=1,
                code_system=command.code_system,
                sector=sector,
                name=command.name,
                level=command.level,
                begin_date=period.begin,
                end_date=period.end,
            )
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, row))
            return row

        return await write(work)

    async def end_course(self, caller: Caller, command: EndRecord, write: Write[RioCourse, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        rules.require_admin(caller.board_code, "end courses of the national catalogue")
        end = await self._on(sandbox_id, command.end)

        def work(session: Session) -> RioCourse:
            code = store.national_course_code(session, sandbox_id, command.code)
            current = store.latest(session, RioCourse, "course_code", sandbox_id, code)
            if current is None:
                raise not_found(f"course {command.code}", "code", rules.COURSE_UNKNOWN)
            return self._end(session, sandbox_id, current, end)

        return await write(work)

    async def get_course(self, caller: Caller, query: RecordOn) -> RioCourse:
        """By either code: the national one or the opleidingseenheidcode."""
        field = "unit_code" if rules.is_course_unit_code(query.code) else "course_code"
        return await self._record_on(caller, query, RioCourse, field, "course", rules.COURSE_UNKNOWN)

    async def list_courses(self, caller: Caller, query: CoursesQuery) -> Listed[RioCourse]:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)
        rows = await self._read(
            lambda s: store.courses(s, sandbox_id=sandbox_id, day=day, sector=query.sector, page=query.page)
        )
        return Listed(rows, query.page)

    # --- Course offerings (aangeboden opleidingen) ---

    async def create_offering(
        self, caller: Caller, command: NewOffering, write: Write[RioCourseOffering, Answer]
    ) -> Answer:
        """Checks in the register's order: provider and ownership, then location (A01060) and its use by the
        provider's board (SBX-LOCATION-NOT-IN-USE), course (A01070) and overlap, all as of the offering's
        begindatum."""
        sandbox_id = caller.require_sandbox()
        period = rules.period(await self._on(sandbox_id, command.begin), command.end)

        def work(session: Session) -> RioCourseOffering:
            begin = period.begin
            # The offering names the national code; the request may have named the course unit.
            course_code = store.national_course_code(session, sandbox_id, command.course_code)
            provider = store.as_of(session, RioProvider, "provider_code", sandbox_id, command.provider_code, begin)
            if provider is None:
                raise not_found(f"provider {command.provider_code} on {begin}", "provider_code", rules.RECORD_NOT_FOUND)
            rules.require_owner(caller.board_code, provider.board_code, field="provider_code")
            violations: list[FieldViolation] = []
            # Without a location the course is offered at every location the provider's board uses.
            if command.location_code:
                location = store.as_of(session, RioLocation, "location_code", sandbox_id, command.location_code, begin)
                if location is None:
                    violations.append(
                        FieldViolation(
                            "location_code",
                            f"location {command.location_code} does not exist on {begin}",
                            rules.LOCATION_UNKNOWN,
                        )
                    )
                else:
                    user = store.location_user_on(session, sandbox_id, command.location_code, begin)
                    violations += rules.check_location_of_board(user, provider.board_code, begin)
            if store.as_of(session, RioCourse, "course_code", sandbox_id, course_code, begin) is None:
                violations.append(
                    FieldViolation(
                        "course_code", f"course {command.course_code} does not exist on {begin}", rules.COURSE_UNKNOWN
                    )
                )
            if violations:
                raise invalid_argument(violations)
            same_triple = store.offerings_of(
                session,
                sandbox_id,
                provider_code=command.provider_code,
                course_code=course_code,
                location_code=command.location_code,
            )
            clash = rules.first_overlap(same_triple, period)
            if clash is not None:
                raise invalid_argument(
                    [
                        FieldViolation(
                            "begin_date",
                            f"offering {clash.offering_id} of the same course at the same location "
                            "overlaps this period",
                            rules.PERIOD_OVERLAP,
                        )
                    ]
                )
            row = RioCourseOffering(
                sandbox_id=sandbox_id,
                offering_id=str(uuid.uuid4()),
                provider_code=command.provider_code,
                course_code=course_code,
                location_code=command.location_code,
                begin_date=period.begin,
                end_date=period.end,
            )
            self._log(session, sandbox_id, ChangeKind.CREATED, store.add(session, row))
            return row

        return await write(work)

    async def end_offering(self, caller: Caller, command: EndRecord, write: Write[RioCourseOffering, Answer]) -> Answer:
        sandbox_id = caller.require_sandbox()
        end = await self._on(sandbox_id, command.end)

        def work(session: Session) -> RioCourseOffering:
            row = store.offering(session, sandbox_id, command.code)
            if row is None:
                raise not_found(f"course offering {command.code}", "code", rules.RECORD_NOT_FOUND)
            provider = store.latest(session, RioProvider, "provider_code", sandbox_id, row.provider_code)
            if provider is None:  # an offering always has its provider; guards against a half-purged sandbox
                raise failed_precondition(
                    [FieldViolation("code", "the offering's provider is gone", rules.INCONSISTENT)]
                )
            rules.require_owner(caller.board_code, provider.board_code)
            return self._end(session, sandbox_id, row, end)

        return await write(work)

    async def get_offering(self, caller: Caller, query: RecordOn) -> RioCourseOffering:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)

        def work(session: Session) -> RioCourseOffering:
            row = store.offering(session, sandbox_id, query.code)
            if row is None or not rules.period_of(row).contains(day):
                raise not_found(f"course offering {query.code} on {day}", "code", rules.RECORD_NOT_FOUND)
            return row

        return await self._read(work)

    async def list_offerings(self, caller: Caller, query: OfferingsQuery) -> Listed[RioCourseOffering]:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, query.day)
        rows = await self._read(
            lambda s: store.offerings(
                s,
                sandbox_id=sandbox_id,
                day=day,
                provider_code=query.provider_code,
                location_code=query.location_code,
                course_code=store.national_course_code(s, sandbox_id, query.course_code),
                page=query.page,
            )
        )
        return Listed(rows, query.page)

    async def check_offering(self, caller: Caller, question: OfferingQuestion) -> OfferingCheck:
        sandbox_id = caller.require_sandbox()
        day = await self._on(sandbox_id, question.day)
        facts = await self._read(
            lambda s: store.offering_facts(
                s,
                sandbox_id=sandbox_id,
                institution_code=question.institution_code,
                course_code=question.course_code,
                location_code=question.location_code,
                day=day,
            )
        )
        decision = rules.decide_offering(
            day=day,
            institution_code=question.institution_code,
            course_code=question.course_code,
            location_code=question.location_code,
            location_found=facts.location_found,
            location_user=facts.location_user,
            course_found=facts.course is not None,
            provider_board=facts.provider.board_code if facts.provider else None,
            offering_found=facts.offering is not None,
        )
        return OfferingCheck(decision, facts)

    # --- The change log ---

    async def list_changes(self, caller: Caller, query: ChangesQuery) -> ChangesRead:
        """At most `limit` entries after the cursor (one more is read to tell whether more are waiting)."""
        limit = query.limit or MAX_CHANGES_PER_ANSWER
        entries = await self._read(
            lambda s: store.changes_after(s, sandbox_id=caller.sandbox_id, after=query.after, limit=limit + 1)
        )
        return ChangesRead(entries, query.after, limit)

    async def follow_changes(
        self, caller: Caller, after: int, follower: Follower | None = None
    ) -> AsyncIterator[RioChangeEntry]:
        """The backlog after the cursor, then each change as it commits; an internal caller without a sandbox
        (ROD) follows every sandbox, each entry naming its own, as a confirming follower (see LogWakeup.join)."""

        async def read_after(cursor: int) -> Sequence[RioChangeEntry]:
            return await self._read(
                lambda s: store.changes_after(s, sandbox_id=caller.sandbox_id, after=cursor, limit=STREAM_BATCH)
            )

        async for entry in follow_log(read_after, _cursor_of, after, self.wakeup, follower):
            yield entry

    # --- Sandbox lifecycle (internal: SandboxAdmin calls these) ---

    async def seed_register(self, caller: Caller, order: SeedOrder, write: Write[dict[str, int], Answer]) -> Answer:
        """A sandbox is seeded once: whatever the key, size or seed number, a later call gets the first counts."""
        caller.require_internal()
        sandbox_id = caller.require_sandbox()
        profile = PROFILES.get(order.size)
        if profile is None:
            raise invalid_argument([FieldViolation("size", f"one of {', '.join(PROFILES)}", rules.INVALID_ENUM)])
        async with self._seeding:
            seeded = await self._read(lambda s: store.seed_run(s, sandbox_id) is not None)
            # Planning takes seconds at full size: it runs before the write transaction, not inside it.
            planned = None if seeded else await asyncio.to_thread(seed.plan, profile, order.seed)

            def work(session: Session) -> dict[str, int]:
                first = store.seed_run(session, sandbox_id)
                if first is not None:
                    return self._stored.seed_counts(first.response)
                counts = seed.apply(
                    session,
                    sandbox_id=sandbox_id,
                    plan=planned or seed.plan(profile, order.seed),
                    record_bytes=self._stored.record_bytes,
                )
                run = RioSeedRun(
                    sandbox_id=sandbox_id,
                    size=order.size,
                    seed=order.seed,
                    response=self._stored.seed_counts_bytes(counts),
                    created_at=real_now(),
                )
                store.add(session, run)
                return counts

            return await write(work)

    async def purge_sandbox(self, caller: Caller, _order: PurgeOrder, write: Write[int, Answer]) -> Answer:
        """Deletes the sandbox's RIO data; the answer counts the records (not log entries) that went."""
        caller.require_internal()
        sandbox_id = caller.require_sandbox()
        return await write(lambda session: store.purge(session, sandbox_id=sandbox_id))


def _cursor_of(entry: RioChangeEntry) -> int:
    assert entry.cursor is not None
    return entry.cursor


def _acting_board(caller: Caller, board_code: str) -> str:
    """The board a new record belongs to: the one named, else the acting board; a board creates only its own."""
    owner = board_code or caller.board_code or ""
    if not owner:
        raise invalid_argument([FieldViolation("board_code", "required", rules.REQUIRED)])
    rules.require_owner(caller.board_code, owner, field="board_code")
    return owner


def _free_institution_code(used: set[str]) -> str:
    number = 0
    while format_institution_code(number) in used:
        number += 1
    return format_institution_code(number)


def _new_use(sandbox_id: str, location_code: str, board_code: str, period: rules.Period) -> RioLocationUse:
    return RioLocationUse(
        sandbox_id=sandbox_id,
        use_id=str(uuid.uuid4()),
        location_code=location_code,
        board_code=board_code,
        begin_date=period.begin,
        end_date=period.end,
    )


def _address_of(row: RioLocation) -> Address:
    return Address(
        street=row.street,
        house_number=row.house_number,
        house_number_addition=row.house_number_addition,
        postcode=row.postcode,
        city=row.city,
        municipality_code=row.municipality_code,
        country_code=row.country_code,
    )


def _address_columns(address: Address) -> dict[str, Any]:
    return {
        "street": address.street,
        "house_number": address.house_number,
        "house_number_addition": address.house_number_addition,
        "postcode": address.postcode,
        "city": address.city,
        "municipality_code": address.municipality_code,
        "country_code": address.country_code,
    }
