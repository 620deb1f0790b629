"""RIO persistence: rows as of a peildatum, versions, keyset pages, the change log. Runs inside one transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import Select, Table, bindparam, delete, func, insert, or_
from sqlalchemy import select as sql_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel, col, select

from services.common.clock import real_now
from services.common.database import lock_log_for_append
from services.common.paging import Page
from services.rio import rules
from services.rio.tables import (
    RioBoard,
    RioChangeEntry,
    RioCourse,
    RioCourseOffering,
    RioIdempotentResponse,
    RioLocation,
    RioLocationUse,
    RioProvider,
    RioSeedRun,
)

CHANGE_LOG = "rio_change"
M = TypeVar("M", bound=SQLModel)
# Rows per INSERT statement of a bulk write: large enough to be fast, small enough for SQLite's variable limit.
CHUNK = 2000


def _column(model: type[SQLModel], name: str) -> Any:
    """A column of a table chosen at run time (the generic reads below serve every versioned table)."""
    return col(getattr(model, name))


def valid_on(model: type[SQLModel], day: dt.date) -> ColumnElement[bool]:
    """begindatum <= peildatum <= einddatum (an open einddatum holds for ever)."""
    begin = _column(model, "begin_date")
    end = _column(model, "end_date")
    return (begin <= day) & or_(end.is_(None), end >= day)


def add(session: Session, row: M) -> M:
    session.add(row)
    return row


# --- Change log ---


def append_change(
    session: Session, *, sandbox_id: str, record_kind: int, change_kind: int, code: str, record: bytes
) -> None:
    """One entry per committed change, holding the record after it (the contract's bytes).

    The writer already holds the log's lock (the mutation path takes it first);
    taking it again here is free and queues, on PostgreSQL, the NOTIFY that
    wakes followers in other processes at commit.
    """
    lock_log_for_append(session, CHANGE_LOG)
    session.add(
        RioChangeEntry(
            sandbox_id=sandbox_id,
            record_kind=record_kind,
            change_kind=change_kind,
            code=code,
            committed_at=real_now(),
            record=record,
        )
    )


def append_changes(session: Session, entries: list[dict[str, Any]]) -> None:
    """Many log entries at once (a seed), with the same lock and NOTIFY as one."""
    lock_log_for_append(session, CHANGE_LOG)
    insert_many(session, RioChangeEntry, entries)


def changes_after(session: Session, *, sandbox_id: str | None, after: int, limit: int) -> Sequence[RioChangeEntry]:
    """Log entries after a cursor, in commit order; all sandboxes' when sandbox_id is None."""
    query = select(RioChangeEntry).where(col(RioChangeEntry.cursor) > after)
    if sandbox_id is not None:
        query = query.where(RioChangeEntry.sandbox_id == sandbox_id)
    return session.exec(query.order_by(col(RioChangeEntry.cursor)).limit(limit)).all()


# --- Versioned records ---


def latest(session: Session, model: type[M], code_field: str, sandbox_id: str, code: str) -> M | None:
    """The highest version of a record, whatever its period."""
    return session.exec(
        select(model)
        .where(_column(model, "sandbox_id") == sandbox_id, _column(model, code_field) == code)
        .order_by(_column(model, "version").desc())
    ).first()


def as_of(session: Session, model: type[M], code_field: str, sandbox_id: str, code: str, day: dt.date) -> M | None:
    """The version of a record valid on the peildatum (versions never overlap)."""
    return session.exec(
        select(model).where(
            _column(model, "sandbox_id") == sandbox_id,
            _column(model, code_field) == code,
            valid_on(model, day),
        )
    ).first()


def highest_code(session: Session, model: type[SQLModel], code_field: str, sandbox_id: str) -> str | None:
    value: str | None = session.exec(
        select(func.max(_column(model, code_field))).where(_column(model, "sandbox_id") == sandbox_id)
    ).one()
    return value


def board(session: Session, sandbox_id: str, board_code: str) -> RioBoard | None:
    return session.exec(
        select(RioBoard).where(RioBoard.sandbox_id == sandbox_id, RioBoard.board_code == board_code)
    ).first()


def offering(session: Session, sandbox_id: str, offering_id: str) -> RioCourseOffering | None:
    return session.exec(
        select(RioCourseOffering).where(
            RioCourseOffering.sandbox_id == sandbox_id, RioCourseOffering.offering_id == offering_id
        )
    ).first()


def institution_codes(session: Session, sandbox_id: str) -> set[str]:
    """Every institution code (BRIN) a provider of the sandbox holds or held."""
    return set(session.exec(select(RioProvider.institution_code).where(RioProvider.sandbox_id == sandbox_id)).all())


def national_course_code(session: Session, sandbox_id: str, code: str) -> str:
    """The national course code of a course named by either code (an unknown unit code is returned as it is)."""
    if not rules.is_course_unit_code(code):
        return code
    found: str | None = session.exec(
        select(RioCourse.course_code).where(RioCourse.sandbox_id == sandbox_id, RioCourse.unit_code == code)
    ).first()
    return found or code


def unit_code_of(session: Session, sandbox_id: str, course_code: str) -> str | None:
    """The opleidingseenheidcode a course already holds (every version keeps it)."""
    found: str | None = session.exec(
        select(RioCourse.unit_code).where(RioCourse.sandbox_id == sandbox_id, RioCourse.course_code == course_code)
    ).first()
    return found


def course_codes(session: Session, sandbox_id: str) -> set[str]:
    return set(session.exec(select(RioCourse.course_code).where(RioCourse.sandbox_id == sandbox_id)).all())


def providers_with_institution(session: Session, sandbox_id: str, institution_code: str) -> Sequence[RioProvider]:
    return session.exec(
        select(RioProvider).where(
            RioProvider.sandbox_id == sandbox_id, RioProvider.institution_code == institution_code
        )
    ).all()


def offerings_of(
    session: Session, sandbox_id: str, *, provider_code: str, course_code: str, location_code: str
) -> Sequence[RioCourseOffering]:
    """Every offering, in any period, of one course by one provider at one location."""
    return session.exec(
        select(RioCourseOffering).where(
            RioCourseOffering.sandbox_id == sandbox_id,
            RioCourseOffering.provider_code == provider_code,
            RioCourseOffering.course_code == course_code,
            RioCourseOffering.location_code == location_code,
        )
    ).all()


# --- Location use (onderwijslocatiegebruik) ---


def location_uses(session: Session, sandbox_id: str, location_code: str) -> Sequence[RioLocationUse]:
    """Every use of one location, in any period, oldest first."""
    return session.exec(
        select(RioLocationUse)
        .where(RioLocationUse.sandbox_id == sandbox_id, RioLocationUse.location_code == location_code)
        .order_by(col(RioLocationUse.begin_date))
    ).all()


def location_user_on(session: Session, sandbox_id: str, location_code: str, day: dt.date) -> str | None:
    """The board using the location on the day (uses of a location never overlap), or None."""
    return rules.user_on(location_uses(session, sandbox_id, location_code), day)


def location_use(session: Session, sandbox_id: str, use_id: str) -> RioLocationUse | None:
    return session.exec(
        select(RioLocationUse).where(RioLocationUse.sandbox_id == sandbox_id, RioLocationUse.use_id == use_id)
    ).first()


def location_span(session: Session, sandbox_id: str, location_code: str) -> rules.Period | None:
    """A location's whole life: its first version's begindatum to its latest version's einddatum."""
    first: dt.date | None = session.exec(
        select(func.min(RioLocation.begin_date)).where(
            RioLocation.sandbox_id == sandbox_id, RioLocation.location_code == location_code
        )
    ).one()
    last = latest(session, RioLocation, "location_code", sandbox_id, location_code)
    if first is None or last is None:
        return None
    return rules.Period(first, last.end_date)


def _used_on(sandbox_id: str, day: dt.date, board: ColumnElement[bool]) -> Any:
    """The codes of the locations used on the day by the board(s) the condition on board_code picks."""
    return select(RioLocationUse.location_code).where(
        RioLocationUse.sandbox_id == sandbox_id, board, valid_on(RioLocationUse, day)
    )


# --- Lists: keyset pages on the row id, stable while records are added ---


def _page(session: Session, query: Any, model: type[M], page: Page) -> list[M]:
    """At most page.size + 1 rows after the page's key: one more than asked tells whether more are waiting."""
    id_column = _column(model, "id")
    return list(session.exec(query.where(id_column > page.after_int).order_by(id_column).limit(page.size + 1)).all())


def boards(session: Session, *, sandbox_id: str, page: Page) -> list[RioBoard]:
    return _page(session, select(RioBoard).where(RioBoard.sandbox_id == sandbox_id), RioBoard, page)


def providers(
    session: Session, *, sandbox_id: str, day: dt.date, board_code: str, institution_code: str, sector: int, page: Page
) -> list[RioProvider]:
    query = select(RioProvider).where(RioProvider.sandbox_id == sandbox_id, valid_on(RioProvider, day))
    if board_code:
        query = query.where(RioProvider.board_code == board_code)
    if institution_code:
        query = query.where(RioProvider.institution_code == institution_code)
    if sector:
        query = query.where(RioProvider.sector == sector)
    return _page(session, query, RioProvider, page)


def locations(
    session: Session, *, sandbox_id: str, day: dt.date, board_code: str, page: Page, provider_code: str = ""
) -> list[RioLocation]:
    query = select(RioLocation).where(RioLocation.sandbox_id == sandbox_id, valid_on(RioLocation, day))
    if board_code:
        # A board's locations are those it uses on the day (onderwijslocatiegebruik), not those it registered.
        query = query.where(
            col(RioLocation.location_code).in_(_used_on(sandbox_id, day, col(RioLocationUse.board_code) == board_code))
        )
    if provider_code:
        # A provider teaches at a location where it offers a course on the day.
        taught = select(RioCourseOffering.location_code).where(
            RioCourseOffering.sandbox_id == sandbox_id,
            RioCourseOffering.provider_code == provider_code,
            valid_on(RioCourseOffering, day),
        )
        # An offering without a location is given at every location the provider's board uses on the day.
        anywhere = taught.where(RioCourseOffering.location_code == "").exists()
        board = select(RioProvider.board_code).where(
            RioProvider.sandbox_id == sandbox_id,
            RioProvider.provider_code == provider_code,
            valid_on(RioProvider, day),
        )
        query = query.where(
            or_(
                col(RioLocation.location_code).in_(taught),
                anywhere
                & col(RioLocation.location_code).in_(
                    _used_on(sandbox_id, day, col(RioLocationUse.board_code).in_(board))
                ),
            )
        )
    return _page(session, query, RioLocation, page)


def uses(
    session: Session, *, sandbox_id: str, day: dt.date | None, location_code: str, board_code: str, page: Page
) -> list[RioLocationUse]:
    """Location uses, on the day or (day None) in every period."""
    query = select(RioLocationUse).where(RioLocationUse.sandbox_id == sandbox_id)
    if day is not None:
        query = query.where(valid_on(RioLocationUse, day))
    if location_code:
        query = query.where(RioLocationUse.location_code == location_code)
    if board_code:
        query = query.where(RioLocationUse.board_code == board_code)
    return _page(session, query, RioLocationUse, page)


def courses(session: Session, *, sandbox_id: str, day: dt.date, sector: int, page: Page) -> list[RioCourse]:
    query = select(RioCourse).where(RioCourse.sandbox_id == sandbox_id, valid_on(RioCourse, day))
    if sector:
        query = query.where(RioCourse.sector == sector)
    return _page(session, query, RioCourse, page)


def offerings(
    session: Session,
    *,
    sandbox_id: str,
    day: dt.date,
    provider_code: str,
    location_code: str,
    course_code: str,
    page: Page,
) -> list[RioCourseOffering]:
    query = select(RioCourseOffering).where(
        RioCourseOffering.sandbox_id == sandbox_id, valid_on(RioCourseOffering, day)
    )
    if provider_code:
        query = query.where(RioCourseOffering.provider_code == provider_code)
    if location_code:
        query = query.where(RioCourseOffering.location_code == location_code)
    if course_code:
        query = query.where(RioCourseOffering.course_code == course_code)
    return _page(session, query, RioCourseOffering, page)


# --- CheckOffering: ROD asks for every enrolment ---


def _on_day(table: Table) -> ColumnElement[bool]:
    day: Any = bindparam("day")
    return (table.c.begin_date <= day) & or_(table.c.end_date.is_(None), table.c.end_date >= day)


def _check_statements() -> tuple[Select[Any], Select[Any], Select[Any], Select[Any], Select[Any]]:
    """CheckOffering's lookups, built once: no per-call SQL building on ROD's hot path."""
    tables = SQLModel.metadata.tables
    location, course = tables["rio_location"], tables["rio_course"]
    provider, offering = tables["rio_provider"], tables["rio_course_offering"]
    use = tables["rio_location_use"]
    sandbox: Any = bindparam("sandbox_id")
    # The board using the location on the day (onderwijslocatiegebruik), fetched with the location itself.
    user = (
        sql_select(use.c.board_code)
        .where(use.c.sandbox_id == sandbox, use.c.location_code == location.c.location_code, _on_day(use))
        .limit(1)
        .scalar_subquery()
    )
    return (
        sql_select(location.c.location_code, user).where(
            location.c.sandbox_id == sandbox, location.c.location_code == bindparam("location_code"), _on_day(location)
        ),
        sql_select(course).where(
            course.c.sandbox_id == sandbox, course.c.course_code == bindparam("course_code"), _on_day(course)
        ),
        # The same course named by its opleidingseenheidcode.
        sql_select(course).where(
            course.c.sandbox_id == sandbox, course.c.unit_code == bindparam("course_code"), _on_day(course)
        ),
        sql_select(provider).where(
            provider.c.sandbox_id == sandbox,
            provider.c.institution_code == bindparam("institution_code"),
            _on_day(provider),
        ),
        sql_select(offering)
        .where(
            offering.c.sandbox_id == sandbox,
            offering.c.provider_code == bindparam("provider_code"),
            offering.c.course_code == bindparam("course_code"),
            # An offering without a location is offered at any location the board uses; one at this very
            # location comes first.
            offering.c.location_code.in_([bindparam("location_code"), ""]),
            _on_day(offering),
        )
        .order_by(offering.c.location_code.desc())
        .limit(1),
    )


_LOCATION_ON_DAY, _COURSE_ON_DAY, _UNIT_ON_DAY, _PROVIDER_ON_DAY, _OFFERING_ON_DAY = _check_statements()


@dataclass(frozen=True)
class OfferingFacts:
    """What was valid on the day for one CheckOffering question (None where nothing was)."""

    location_found: bool
    # The board using the location on the day (None: nobody, or no location).
    location_user: str | None
    course: RioCourse | None
    provider: RioProvider | None
    offering: RioCourseOffering | None


def offering_facts(
    session: Session, *, sandbox_id: str, institution_code: str, course_code: str, location_code: str, day: dt.date
) -> OfferingFacts:
    """Four indexed lookups, all as of the day (the location with the board using it then); the offering only
    when the other three exist."""
    connection = session.connection()
    params: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "day": day,
        "institution_code": institution_code,
        "course_code": course_code,
        "location_code": location_code,
    }
    location_row = connection.execute(_LOCATION_ON_DAY, params).first()
    location_user: str | None = location_row[1] if location_row else None
    by_unit = rules.is_course_unit_code(course_code)
    course_row = connection.execute(_UNIT_ON_DAY if by_unit else _COURSE_ON_DAY, params).first()
    provider_row = connection.execute(_PROVIDER_ON_DAY, params).first()
    course = RioCourse.model_construct(**course_row._mapping) if course_row else None
    provider = RioProvider.model_construct(**provider_row._mapping) if provider_row else None
    offering = None
    if provider is not None and location_row is not None and course is not None:
        # Offerings name the national code; the question may have named the course unit.
        keys = {**params, "provider_code": provider.provider_code, "course_code": course.course_code}
        offering_row = connection.execute(_OFFERING_ON_DAY, keys).first()
        offering = RioCourseOffering.model_construct(**offering_row._mapping) if offering_row else None
    return OfferingFacts(location_row is not None, location_user, course, provider, offering)


# --- Seeding and purging a sandbox ---


def seed_run(session: Session, sandbox_id: str) -> RioSeedRun | None:
    return session.get(RioSeedRun, sandbox_id)


def insert_many(session: Session, model: type[SQLModel], rows: list[dict[str, Any]]) -> None:
    """Bulk insert without building row objects (a full-size seed writes ~35,000 rows)."""
    table = SQLModel.metadata.tables[str(model.__tablename__)]
    connection = session.connection()
    for start in range(0, len(rows), CHUNK):
        connection.execute(insert(table), rows[start : start + CHUNK])


SANDBOX_TABLES: tuple[type[SQLModel], ...] = (
    RioCourseOffering,
    RioLocationUse,
    RioLocation,
    RioProvider,
    RioCourse,
    RioBoard,
    RioChangeEntry,
    RioSeedRun,
    RioIdempotentResponse,
)


def purge(session: Session, *, sandbox_id: str) -> int:
    """Deletes every RIO row of one sandbox; returns how many records (not log entries or keys) went."""
    deleted = 0
    for model in SANDBOX_TABLES:
        result = session.execute(delete(model).where(_column(model, "sandbox_id") == sandbox_id))
        if model not in (RioChangeEntry, RioSeedRun, RioIdempotentResponse):
            deleted += int(getattr(result, "rowcount", 0) or 0)
    return deleted
