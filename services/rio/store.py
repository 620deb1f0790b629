"""RIO persistence: reads as of a peildatum, versioned writes, the change log. Runs inside one transaction."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy import Select, Table, bindparam, delete, func, or_
from sqlalchemy import select as sql_select
from sqlalchemy.sql.elements import ColumnElement
from sqlmodel import Session, SQLModel, col, select

from services._gen.registry.v1 import common_pb2, rio_pb2
from services.common.clock import real_now
from services.common.errors import FieldViolation, RegistryError, failed_precondition, invalid_argument, not_found
from services.common.identifiers import format_institution_code, format_rio_code
from services.rio import rules
from services.rio.messages import (
    board_message,
    change_message,
    course_message,
    location_message,
    offering_message,
    provider_message,
)
from services.rio.tables import (
    RioBoard,
    RioChangeEntry,
    RioCourse,
    RioCourseOffering,
    RioIdempotentResponse,
    RioLocation,
    RioProvider,
    RioSeedRun,
)

M = TypeVar("M", bound=SQLModel)
# The records with a validity period that an owner can end.
V = TypeVar("V", RioProvider, RioLocation, RioCourse, RioCourseOffering)
MessageT = TypeVar("MessageT", bound=Message)

# The register's "changed since" answers hold at most 5,000 items.
MAX_CHANGES_PER_ANSWER = 5000
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


def _column(model: type[SQLModel], name: str) -> Any:
    """A column of a table chosen at run time (the generic reads below serve every versioned table)."""
    return col(getattr(model, name))


def _attribute(row: SQLModel, name: str) -> Any:
    return getattr(row, name)


def valid_on(model: type[SQLModel], day: dt.date) -> ColumnElement[bool]:
    """begindatum <= peildatum <= einddatum (an open einddatum holds for ever)."""
    begin = _column(model, "begin_date")
    end = _column(model, "end_date")
    return (begin <= day) & or_(end.is_(None), end >= day)


def already_exists(field: str, what: str) -> RegistryError:
    return RegistryError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"{what} already exists",
        "ALREADY_EXISTS",
        (FieldViolation(field, f"{what} already exists", "ALREADY_EXISTS"),),
    )


# --- Change log ---


def append_change(
    session: Session, *, sandbox_id: str, record_kind: int, change_kind: int, code: str, record: Message
) -> None:
    """One entry per committed change, holding the record after it. The caller holds the log lock."""
    session.add(
        RioChangeEntry(
            sandbox_id=sandbox_id,
            record_kind=record_kind,
            change_kind=change_kind,
            code=code,
            committed_at=real_now(),
            record=record.SerializeToString(),
        )
    )


def _end(
    session: Session,
    row: V,
    end: dt.date,
    *,
    sandbox_id: str,
    record_kind: int,
    code: str,
    to_message: Callable[[V], MessageT],
) -> MessageT:
    """Sets a record version's einddatum (the rules check it) and publishes the ENDED change."""
    row.end_date = rules.plan_end(rules.period_of(row), end).end
    session.add(row)
    message = to_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=record_kind,
        change_kind=rio_pb2.RIO_CHANGE_KIND_ENDED,
        code=code,
        record=message,
    )
    return message


def list_changes(session: Session, *, sandbox_id: str | None, after: int, limit: int) -> list[rio_pb2.RioChange]:
    query = select(RioChangeEntry).where(col(RioChangeEntry.cursor) > after)
    if sandbox_id is not None:
        query = query.where(RioChangeEntry.sandbox_id == sandbox_id)
    rows = session.exec(query.order_by(col(RioChangeEntry.cursor)).limit(limit)).all()
    return [change_message(row) for row in rows]


# --- Generic reads ---


def _versions(session: Session, model: type[M], code_field: str, sandbox_id: str, code: str) -> Sequence[M]:
    code_column = _column(model, code_field)
    return session.exec(
        select(model)
        .where(_column(model, "sandbox_id") == sandbox_id, code_column == code)
        .order_by(_column(model, "version"))
    ).all()


def _latest(session: Session, model: type[M], code_field: str, sandbox_id: str, code: str) -> M | None:
    versions = _versions(session, model, code_field, sandbox_id, code)
    return versions[-1] if versions else None


def _as_of(session: Session, model: type[M], code_field: str, sandbox_id: str, code: str, day: dt.date) -> M | None:
    return session.exec(
        select(model).where(
            _column(model, "sandbox_id") == sandbox_id,
            _column(model, code_field) == code,
            valid_on(model, day),
        )
    ).first()


def _max_code(session: Session, column: Any, sandbox_column: Any, sandbox_id: str) -> str | None:
    value: str | None = session.exec(select(func.max(column)).where(sandbox_column == sandbox_id)).one()
    return value


def _next_code(session: Session, kind: str, column: Any, sandbox_column: Any, sandbox_id: str) -> str:
    highest = _max_code(session, column, sandbox_column, sandbox_id)
    return format_rio_code(kind, rules.next_rio_number(kind, [highest] if highest else []))


@dataclass(frozen=True)
class Page:
    size: int
    after_id: int


def page_of(request: common_pb2.PageRequest) -> Page:
    size = request.page_size if request.page_size > 0 else DEFAULT_PAGE_SIZE
    if request.page_token and not request.page_token.isdigit():
        raise invalid_argument(
            [FieldViolation("page.page_token", "not a token from a previous answer", "INVALID_TOKEN")]
        )
    return Page(min(size, MAX_PAGE_SIZE), int(request.page_token or 0))


def _page(session: Session, query: Any, model: type[M], page: Page) -> tuple[list[M], str]:
    """Keyset pagination on the row id: stable while records are added."""
    id_column = _column(model, "id")
    rows = list(session.exec(query.where(id_column > page.after_id).order_by(id_column).limit(page.size + 1)).all())
    token = ""
    if len(rows) > page.size:
        rows = rows[: page.size]
        token = str(_attribute(rows[-1], "id"))
    return rows, token


# --- Boards ---


def create_board(
    session: Session, *, sandbox_id: str, board_code: str, name: str, kvk_number: str, begin: dt.date
) -> rio_pb2.Board:
    if board_code:
        if _board(session, sandbox_id, board_code) is not None:
            raise already_exists("board_code", f"board {board_code}")
    else:
        board_code = _next_code(session, "board", RioBoard.board_code, RioBoard.sandbox_id, sandbox_id)
    row = RioBoard(sandbox_id=sandbox_id, board_code=board_code, name=name, kvk_number=kvk_number, begin_date=begin)
    session.add(row)
    message = board_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_BOARD,
        change_kind=rio_pb2.RIO_CHANGE_KIND_CREATED,
        code=board_code,
        record=message,
    )
    return message


def _board(session: Session, sandbox_id: str, board_code: str) -> RioBoard | None:
    return session.exec(
        select(RioBoard).where(RioBoard.sandbox_id == sandbox_id, RioBoard.board_code == board_code)
    ).first()


def get_board(session: Session, *, sandbox_id: str, board_code: str) -> rio_pb2.Board:
    row = _board(session, sandbox_id, board_code)
    if row is None:
        raise not_found(f"board {board_code}", "board_code")
    return board_message(row)


def list_boards(session: Session, *, sandbox_id: str, page: Page) -> rio_pb2.ListBoardsResponse:
    rows, token = _page(session, select(RioBoard).where(RioBoard.sandbox_id == sandbox_id), RioBoard, page)
    return rio_pb2.ListBoardsResponse(
        boards=[board_message(r) for r in rows], page=common_pb2.PageResponse(next_page_token=token)
    )


# --- Providers ---


@dataclass(frozen=True)
class NewProvider:
    provider_code: str
    board_code: str
    institution_code: str
    name: str
    sector: int
    period: rules.Period


def create_provider(
    session: Session, *, sandbox_id: str, acting_board: str | None, new: NewProvider
) -> rio_pb2.Provider:
    rules.require_owner(acting_board, new.board_code, field="board_code")
    if _board(session, sandbox_id, new.board_code) is None:
        raise not_found(f"board {new.board_code}", "board_code")
    code = new.provider_code
    if code:
        if _latest(session, RioProvider, "provider_code", sandbox_id, code) is not None:
            raise already_exists("provider_code", f"provider {code}")
    else:
        code = _next_code(session, "provider", RioProvider.provider_code, RioProvider.sandbox_id, sandbox_id)
    institution = new.institution_code
    if institution:
        same_code = session.exec(
            select(RioProvider).where(RioProvider.sandbox_id == sandbox_id, RioProvider.institution_code == institution)
        ).all()
        clash = rules.first_overlap(same_code, new.period)
        if clash is not None:
            raise invalid_argument(
                [
                    FieldViolation(
                        "institution_code",
                        f"{institution} is already used by provider {clash.provider_code} in an overlapping period",
                        rules.PERIOD_OVERLAP,
                    )
                ]
            )
    else:
        institution = free_institution_code(session, sandbox_id)
    row = RioProvider(
        sandbox_id=sandbox_id,
        provider_code=code,
        version=1,
        board_code=new.board_code,
        institution_code=institution,
        name=new.name,
        sector=new.sector,
        begin_date=new.period.begin,
        end_date=new.period.end,
    )
    session.add(row)
    message = provider_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_PROVIDER,
        change_kind=rio_pb2.RIO_CHANGE_KIND_CREATED,
        code=code,
        record=message,
    )
    return message


def free_institution_code(session: Session, sandbox_id: str) -> str:
    used = set(session.exec(select(RioProvider.institution_code).where(RioProvider.sandbox_id == sandbox_id)).all())
    number = 0
    while format_institution_code(number) in used:
        number += 1
    return format_institution_code(number)


def update_provider(
    session: Session, *, sandbox_id: str, acting_board: str | None, code: str, effective: dt.date, name: str
) -> rio_pb2.Provider:
    current = _latest(session, RioProvider, "provider_code", sandbox_id, code)
    if current is None:
        raise not_found(f"provider {code}", "provider_code")
    rules.require_owner(acting_board, current.board_code)
    plan = rules.plan_new_version(rules.period_of(current), effective)
    current.end_date = plan.current.end
    session.add(current)
    row = RioProvider(
        sandbox_id=sandbox_id,
        provider_code=code,
        version=current.version + 1,
        board_code=current.board_code,
        institution_code=current.institution_code,
        name=name or current.name,
        sector=current.sector,
        begin_date=plan.new.begin,
        end_date=plan.new.end,
    )
    session.add(row)
    message = provider_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_PROVIDER,
        change_kind=rio_pb2.RIO_CHANGE_KIND_UPDATED,
        code=code,
        record=message,
    )
    return message


def end_provider(
    session: Session, *, sandbox_id: str, acting_board: str | None, code: str, end: dt.date
) -> rio_pb2.Provider:
    current = _latest(session, RioProvider, "provider_code", sandbox_id, code)
    if current is None:
        raise not_found(f"provider {code}", "code")
    rules.require_owner(acting_board, current.board_code)
    return _end(
        session,
        current,
        end,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_PROVIDER,
        code=code,
        to_message=provider_message,
    )


def get_provider(session: Session, *, sandbox_id: str, code: str, day: dt.date) -> rio_pb2.Provider:
    row = _as_of(session, RioProvider, "provider_code", sandbox_id, code, day)
    if row is None:
        raise not_found(f"provider {code} on {day}", "code")
    return provider_message(row)


def list_providers(
    session: Session,
    *,
    sandbox_id: str,
    day: dt.date,
    board_code: str,
    institution_code: str,
    sector: int,
    page: Page,
) -> rio_pb2.ListProvidersResponse:
    query = select(RioProvider).where(RioProvider.sandbox_id == sandbox_id, valid_on(RioProvider, day))
    if board_code:
        query = query.where(RioProvider.board_code == board_code)
    if institution_code:
        query = query.where(RioProvider.institution_code == institution_code)
    if sector:
        query = query.where(RioProvider.sector == sector)
    rows, token = _page(session, query, RioProvider, page)
    return rio_pb2.ListProvidersResponse(
        providers=[provider_message(r) for r in rows], page=common_pb2.PageResponse(next_page_token=token)
    )


# --- Locations ---


@dataclass(frozen=True)
class AddressFields:
    street: str = ""
    house_number: int = 0
    house_number_addition: str = ""
    postcode: str = ""
    city: str = ""
    municipality_code: str = ""
    country_code: str = "NL"

    @classmethod
    def of(cls, address: common_pb2.Address) -> AddressFields:
        return cls(
            street=address.street,
            house_number=address.house_number,
            house_number_addition=address.house_number_addition,
            postcode=address.postcode.replace(" ", "").upper(),
            city=address.city,
            municipality_code=address.municipality_code,
            country_code=address.country_code or "NL",
        )

    def columns(self) -> dict[str, Any]:
        return {
            "street": self.street,
            "house_number": self.house_number,
            "house_number_addition": self.house_number_addition,
            "postcode": self.postcode,
            "city": self.city,
            "municipality_code": self.municipality_code,
            "country_code": self.country_code,
        }


def create_location(
    session: Session,
    *,
    sandbox_id: str,
    acting_board: str | None,
    location_code: str,
    board_code: str,
    name: str,
    address: AddressFields,
    period: rules.Period,
) -> rio_pb2.Location:
    rules.require_owner(acting_board, board_code, field="board_code")
    if _board(session, sandbox_id, board_code) is None:
        raise not_found(f"board {board_code}", "board_code")
    if location_code:
        if _latest(session, RioLocation, "location_code", sandbox_id, location_code) is not None:
            raise already_exists("location_code", f"location {location_code}")
    else:
        location_code = _next_code(session, "location", RioLocation.location_code, RioLocation.sandbox_id, sandbox_id)
    row = RioLocation(
        sandbox_id=sandbox_id,
        location_code=location_code,
        version=1,
        board_code=board_code,
        name=name,
        begin_date=period.begin,
        end_date=period.end,
        **address.columns(),
    )
    session.add(row)
    message = location_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_LOCATION,
        change_kind=rio_pb2.RIO_CHANGE_KIND_CREATED,
        code=location_code,
        record=message,
    )
    return message


def update_location(
    session: Session,
    *,
    sandbox_id: str,
    acting_board: str | None,
    code: str,
    effective: dt.date,
    name: str,
    address: AddressFields | None,
) -> rio_pb2.Location:
    current = _latest(session, RioLocation, "location_code", sandbox_id, code)
    if current is None:
        raise not_found(f"location {code}", "location_code", rules.LOCATION_UNKNOWN)
    rules.require_owner(acting_board, current.board_code)
    plan = rules.plan_new_version(rules.period_of(current), effective)
    current.end_date = plan.current.end
    session.add(current)
    kept = AddressFields(
        street=current.street,
        house_number=current.house_number,
        house_number_addition=current.house_number_addition,
        postcode=current.postcode,
        city=current.city,
        municipality_code=current.municipality_code,
        country_code=current.country_code,
    )
    row = RioLocation(
        sandbox_id=sandbox_id,
        location_code=code,
        version=current.version + 1,
        board_code=current.board_code,
        name=name or current.name,
        begin_date=plan.new.begin,
        end_date=plan.new.end,
        **(address or kept).columns(),
    )
    session.add(row)
    message = location_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_LOCATION,
        change_kind=rio_pb2.RIO_CHANGE_KIND_UPDATED,
        code=code,
        record=message,
    )
    return message


def end_location(
    session: Session, *, sandbox_id: str, acting_board: str | None, code: str, end: dt.date
) -> rio_pb2.Location:
    current = _latest(session, RioLocation, "location_code", sandbox_id, code)
    if current is None:
        raise not_found(f"location {code}", "code", rules.LOCATION_UNKNOWN)
    rules.require_owner(acting_board, current.board_code)
    return _end(
        session,
        current,
        end,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_LOCATION,
        code=code,
        to_message=location_message,
    )


def get_location(session: Session, *, sandbox_id: str, code: str, day: dt.date) -> rio_pb2.Location:
    row = _as_of(session, RioLocation, "location_code", sandbox_id, code, day)
    if row is None:
        raise not_found(f"location {code} on {day}", "code", rules.LOCATION_UNKNOWN)
    return location_message(row)


def list_locations(
    session: Session, *, sandbox_id: str, day: dt.date, board_code: str, page: Page
) -> rio_pb2.ListLocationsResponse:
    query = select(RioLocation).where(RioLocation.sandbox_id == sandbox_id, valid_on(RioLocation, day))
    if board_code:
        query = query.where(RioLocation.board_code == board_code)
    rows, token = _page(session, query, RioLocation, page)
    return rio_pb2.ListLocationsResponse(
        locations=[location_message(r) for r in rows], page=common_pb2.PageResponse(next_page_token=token)
    )


# --- Courses ---


@dataclass(frozen=True)
class NewCourse:
    course_code: str
    code_system: int
    sector: int
    name: str
    level: str
    period: rules.Period


def create_course(session: Session, *, sandbox_id: str, new: NewCourse) -> rio_pb2.Course:
    if _latest(session, RioCourse, "course_code", sandbox_id, new.course_code) is not None:
        raise already_exists("course_code", f"course {new.course_code}")
    row = RioCourse(
        sandbox_id=sandbox_id,
        course_code=new.course_code,
        version=1,
        code_system=new.code_system,
        sector=new.sector,
        name=new.name,
        level=new.level,
        begin_date=new.period.begin,
        end_date=new.period.end,
    )
    session.add(row)
    message = course_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_COURSE,
        change_kind=rio_pb2.RIO_CHANGE_KIND_CREATED,
        code=new.course_code,
        record=message,
    )
    return message


def end_course(session: Session, *, sandbox_id: str, code: str, end: dt.date) -> rio_pb2.Course:
    current = _latest(session, RioCourse, "course_code", sandbox_id, code)
    if current is None:
        raise not_found(f"course {code}", "code", rules.COURSE_UNKNOWN)
    return _end(
        session,
        current,
        end,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_COURSE,
        code=code,
        to_message=course_message,
    )


def get_course(session: Session, *, sandbox_id: str, code: str, day: dt.date) -> rio_pb2.Course:
    row = _as_of(session, RioCourse, "course_code", sandbox_id, code, day)
    if row is None:
        raise not_found(f"course {code} on {day}", "code", rules.COURSE_UNKNOWN)
    return course_message(row)


def list_courses(
    session: Session, *, sandbox_id: str, day: dt.date, sector: int, page: Page
) -> rio_pb2.ListCoursesResponse:
    query = select(RioCourse).where(RioCourse.sandbox_id == sandbox_id, valid_on(RioCourse, day))
    if sector:
        query = query.where(RioCourse.sector == sector)
    rows, token = _page(session, query, RioCourse, page)
    return rio_pb2.ListCoursesResponse(
        courses=[course_message(r) for r in rows], page=common_pb2.PageResponse(next_page_token=token)
    )


# --- Course offerings ---


def create_offering(
    session: Session,
    *,
    sandbox_id: str,
    acting_board: str | None,
    provider_code: str,
    course_code: str,
    location_code: str,
    period: rules.Period,
) -> rio_pb2.CourseOffering:
    """Checks in the register's order: provider and ownership, then location (A01060), course (A01070), placement
    (A01080) and overlap, all as of the offering's begindatum."""
    provider = _as_of(session, RioProvider, "provider_code", sandbox_id, provider_code, period.begin)
    if provider is None:
        raise not_found(f"provider {provider_code} on {period.begin}", "provider_code")
    rules.require_owner(acting_board, provider.board_code, field="provider_code")
    violations: list[FieldViolation] = []
    location = _as_of(session, RioLocation, "location_code", sandbox_id, location_code, period.begin)
    if location is None:
        violations.append(
            FieldViolation(
                "location_code", f"location {location_code} does not exist on {period.begin}", rules.LOCATION_UNKNOWN
            )
        )
    else:
        violations += rules.check_location_of_board(location.board_code, provider.board_code)
    if _as_of(session, RioCourse, "course_code", sandbox_id, course_code, period.begin) is None:
        violations.append(
            FieldViolation(
                "course_code", f"course {course_code} does not exist on {period.begin}", rules.COURSE_UNKNOWN
            )
        )
    if violations:
        raise invalid_argument(violations)
    same_triple = session.exec(
        select(RioCourseOffering).where(
            RioCourseOffering.sandbox_id == sandbox_id,
            RioCourseOffering.provider_code == provider_code,
            RioCourseOffering.course_code == course_code,
            RioCourseOffering.location_code == location_code,
        )
    ).all()
    clash = rules.first_overlap(same_triple, period)
    if clash is not None:
        raise invalid_argument(
            [
                FieldViolation(
                    "begin_date",
                    f"offering {clash.offering_id} of the same course at the same location overlaps this period",
                    rules.PERIOD_OVERLAP,
                )
            ]
        )
    row = RioCourseOffering(
        sandbox_id=sandbox_id,
        offering_id=str(uuid.uuid4()),
        provider_code=provider_code,
        course_code=course_code,
        location_code=location_code,
        begin_date=period.begin,
        end_date=period.end,
    )
    session.add(row)
    message = offering_message(row)
    append_change(
        session,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING,
        change_kind=rio_pb2.RIO_CHANGE_KIND_CREATED,
        code=row.offering_id,
        record=message,
    )
    return message


def _offering(session: Session, sandbox_id: str, offering_id: str) -> RioCourseOffering | None:
    return session.exec(
        select(RioCourseOffering).where(
            RioCourseOffering.sandbox_id == sandbox_id, RioCourseOffering.offering_id == offering_id
        )
    ).first()


def end_offering(
    session: Session, *, sandbox_id: str, acting_board: str | None, offering_id: str, end: dt.date
) -> rio_pb2.CourseOffering:
    row = _offering(session, sandbox_id, offering_id)
    if row is None:
        raise not_found(f"course offering {offering_id}", "code")
    provider = _latest(session, RioProvider, "provider_code", sandbox_id, row.provider_code)
    if provider is None:  # an offering always has its provider; guards against a half-purged sandbox
        raise failed_precondition([FieldViolation("code", "the offering's provider is gone", "INCONSISTENT")])
    rules.require_owner(acting_board, provider.board_code)
    return _end(
        session,
        row,
        end,
        sandbox_id=sandbox_id,
        record_kind=rio_pb2.RIO_RECORD_KIND_COURSE_OFFERING,
        code=offering_id,
        to_message=offering_message,
    )


def get_offering(session: Session, *, sandbox_id: str, offering_id: str, day: dt.date) -> rio_pb2.CourseOffering:
    row = _offering(session, sandbox_id, offering_id)
    if row is None or not rules.period_of(row).contains(day):
        raise not_found(f"course offering {offering_id} on {day}", "code")
    return offering_message(row)


def list_offerings(
    session: Session,
    *,
    sandbox_id: str,
    day: dt.date,
    provider_code: str,
    location_code: str,
    course_code: str,
    page: Page,
) -> rio_pb2.ListCourseOfferingsResponse:
    query = select(RioCourseOffering).where(
        RioCourseOffering.sandbox_id == sandbox_id, valid_on(RioCourseOffering, day)
    )
    if provider_code:
        query = query.where(RioCourseOffering.provider_code == provider_code)
    if location_code:
        query = query.where(RioCourseOffering.location_code == location_code)
    if course_code:
        query = query.where(RioCourseOffering.course_code == course_code)
    rows, token = _page(session, query, RioCourseOffering, page)
    return rio_pb2.ListCourseOfferingsResponse(
        offerings=[offering_message(r) for r in rows], page=common_pb2.PageResponse(next_page_token=token)
    )


def _on_day(table: Table) -> ColumnElement[bool]:
    day: Any = bindparam("day")
    return (table.c.begin_date <= day) & or_(table.c.end_date.is_(None), table.c.end_date >= day)


def _check_statements() -> tuple[Select[Any], Select[Any], Select[Any], Select[Any]]:
    """CheckOffering's four lookups, built once: ROD asks for every enrolment, so no per-call SQL building."""
    tables = SQLModel.metadata.tables
    location, course = tables["rio_location"], tables["rio_course"]
    provider, offering = tables["rio_provider"], tables["rio_course_offering"]
    sandbox: Any = bindparam("sandbox_id")
    return (
        sql_select(location.c.board_code).where(
            location.c.sandbox_id == sandbox, location.c.location_code == bindparam("location_code"), _on_day(location)
        ),
        sql_select(course).where(
            course.c.sandbox_id == sandbox, course.c.course_code == bindparam("course_code"), _on_day(course)
        ),
        sql_select(provider).where(
            provider.c.sandbox_id == sandbox,
            provider.c.institution_code == bindparam("institution_code"),
            _on_day(provider),
        ),
        sql_select(offering).where(
            offering.c.sandbox_id == sandbox,
            offering.c.provider_code == bindparam("provider_code"),
            offering.c.course_code == bindparam("course_code"),
            offering.c.location_code == bindparam("location_code"),
            _on_day(offering),
        ),
    )


_LOCATION_ON_DAY, _COURSE_ON_DAY, _PROVIDER_ON_DAY, _OFFERING_ON_DAY = _check_statements()


def check_offering(
    session: Session, *, sandbox_id: str, institution_code: str, course_code: str, location_code: str, day: dt.date
) -> rio_pb2.CheckOfferingResponse:
    """ROD's question for every enrolment: four indexed lookups, all as of the day."""
    connection = session.connection()
    params: dict[str, Any] = {
        "sandbox_id": sandbox_id,
        "day": day,
        "institution_code": institution_code,
        "course_code": course_code,
        "location_code": location_code,
    }
    location_board: str | None = connection.execute(_LOCATION_ON_DAY, params).scalar()
    course_row = connection.execute(_COURSE_ON_DAY, params).first()
    provider_row = connection.execute(_PROVIDER_ON_DAY, params).first()
    course = RioCourse.model_construct(**course_row._mapping) if course_row else None
    provider = RioProvider.model_construct(**provider_row._mapping) if provider_row else None
    offering = None
    if provider is not None and location_board is not None and course is not None:
        offering_row = connection.execute(_OFFERING_ON_DAY, {**params, "provider_code": provider.provider_code}).first()
        offering = RioCourseOffering.model_construct(**offering_row._mapping) if offering_row else None
    decision = rules.decide_offering(
        day=day,
        institution_code=institution_code,
        course_code=course_code,
        location_code=location_code,
        location_board=location_board,
        course_found=course is not None,
        provider_board=provider.board_code if provider else None,
        offering_found=offering is not None,
    )
    answer = rio_pb2.CheckOfferingResponse(
        offered=decision.offered, reason_code=decision.reason_code, reason=decision.reason
    )
    if offering is not None and decision.offered:
        answer.offering.CopyFrom(offering_message(offering))
    if provider is not None:
        answer.provider.CopyFrom(provider_message(provider))
    if course is not None:
        answer.course.CopyFrom(course_message(course))
    return answer


# --- Sandbox lifecycle ---

SANDBOX_TABLES: tuple[type[SQLModel], ...] = (
    RioCourseOffering,
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
