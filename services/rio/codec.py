"""RIO's protobuf <-> domain mapping: requests checked and decoded (typed field violations), rows encoded."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from google.protobuf.message import Message
from google.type.date_pb2 import Date

from services._gen.registry.v1 import common_pb2, rio_pb2
from services.common import paging
from services.common.dates import from_proto_date, to_proto_date, to_timestamp
from services.common.errors import FieldViolation, invalid_argument
from services.common.identifiers import (
    InvalidIdentifierError,
    validate_course_code,
    validate_institution_code,
    validate_rio_code,
)
from services.rio import rules
from services.rio.rules import Address, CodeSystem, Sector
from services.rio.service import (
    BoardsQuery,
    ChangesQuery,
    ChangesRead,
    CoursesQuery,
    EndRecord,
    Listed,
    LocationsQuery,
    LocationUsesQuery,
    NewBoard,
    NewCourse,
    NewLocation,
    NewLocationUse,
    NewOffering,
    NewProvider,
    NewVersion,
    OfferingCheck,
    OfferingQuestion,
    OfferingsQuery,
    ProvidersQuery,
    PurgeOrder,
    Record,
    RecordOn,
    SeedOrder,
)
from services.rio.tables import (
    RioBoard,
    RioChangeEntry,
    RioCourse,
    RioCourseOffering,
    RioLocation,
    RioLocationUse,
    RioProvider,
)

T = TypeVar("T")

TOO_LONG = rules.TOO_LONG
# Longest accepted value of a request's text fields, by field name: the widest column it is stored in or
# compared with (so PostgreSQL never refuses it as INTERNAL). Codes have fixed shapes, checked per field.
# The server refuses NUL characters in any field (services.common.request_guard) and the mutation path
# overlong idempotency keys, before this.
_MAX_LENGTH = {
    "name": 200,
    "code": 36,
    "course_code": 36,
    "level": 20,
    "street": 200,
    "city": 100,
    "house_number_addition": 10,
    "postcode": 20,  # normalised (spaces out) and checked again by the address decoder
    "size": 20,
}
# Any other text field: codes of a fixed shape are checked again by their decoders.
_DEFAULT_MAX_LENGTH = 200
# The paging rule checks its own token, the mutation path the idempotency key.
_UNCHECKED = frozenset({"page_token", "idempotency_key"})


# --- Checks every request passes first ---


def check_text(request: Message) -> None:
    """Refuses (INVALID_ARGUMENT, naming each field) text longer than any column that could hold it."""
    violations: list[FieldViolation] = []
    _check_text(request, "", violations)
    if violations:
        raise invalid_argument(violations)


def _check_text(message: Message, prefix: str, violations: list[FieldViolation]) -> None:
    for descriptor, value in message.ListFields():
        name = f"{prefix}{descriptor.name}"
        if isinstance(value, str) and descriptor.name not in _UNCHECKED:
            limit = _MAX_LENGTH.get(descriptor.name, _DEFAULT_MAX_LENGTH)
            if len(value) > limit:
                violations.append(FieldViolation(name, f"at most {limit} characters", TOO_LONG))
        elif isinstance(value, Message):
            _check_text(value, f"{name}.", violations)


def _date(value: Date, field: str) -> dt.date | None:
    try:
        return from_proto_date(value)
    except ValueError:
        raise invalid_argument([FieldViolation(field, "not a calendar date", rules.INVALID_DATE)]) from None


def _rio_code(kind: str, value: str, field: str, *, required: bool = True) -> str:
    if not value:
        if required:
            raise invalid_argument([FieldViolation(field, "required", rules.REQUIRED)])
        return value
    try:
        return validate_rio_code(kind, value)
    except InvalidIdentifierError as error:
        raise invalid_argument([FieldViolation(field, str(error), rules.INVALID_CODE)]) from None


def _institution_code(value: str, field: str, *, required: bool) -> str:
    if not value:
        if required:
            raise invalid_argument([FieldViolation(field, "required", rules.REQUIRED)])
        return value
    try:
        return validate_institution_code(value)
    except InvalidIdentifierError as error:
        raise invalid_argument([FieldViolation(field, str(error), rules.INVALID_CODE)]) from None


def _required_text(value: str, field: str) -> str:
    if not value.strip():
        raise invalid_argument([FieldViolation(field, "required", rules.REQUIRED)])
    return value.strip()


def _sector(value: int, field: str = "sector") -> Sector:
    if value not in Sector._value2member_map_:
        raise invalid_argument(
            [FieldViolation(field, "choose SECTOR_PO, SECTOR_VO, SECTOR_MBO or SECTOR_HO", rules.INVALID_ENUM)]
        )
    return Sector(value)


def _record_code(value: str, field: str = "code") -> str:
    if not value:
        raise invalid_argument([FieldViolation(field, "required, at most 36 characters", rules.REQUIRED)])
    return value


def _address(address: common_pb2.Address, field: str = "address") -> Address:
    decoded = Address(
        street=address.street,
        house_number=address.house_number,
        house_number_addition=address.house_number_addition,
        postcode=address.postcode.replace(" ", "").upper(),
        city=address.city,
        municipality_code=address.municipality_code,
        country_code=address.country_code or "NL",
    )
    violations = []
    if len(decoded.postcode) > 6:
        violations.append(FieldViolation(f"{field}.postcode", "a Dutch postcode like 1234AB", rules.INVALID_POSTCODE))
    if decoded.municipality_code and not (len(decoded.municipality_code) == 4 and decoded.municipality_code.isdigit()):
        violations.append(FieldViolation(f"{field}.municipality_code", "four digits", rules.INVALID_CODE))
    if len(decoded.country_code) != 2:
        violations.append(FieldViolation(f"{field}.country_code", "ISO 3166-1 alpha-2", rules.INVALID_CODE))
    if violations:
        raise invalid_argument(violations)
    return decoded


def _page(request: common_pb2.PageRequest) -> paging.Page:
    return paging.page_of(request, numeric=True)


# --- Requests -> commands and queries ---


def new_board(request: rio_pb2.CreateBoardRequest) -> NewBoard:
    kvk = request.kvk_number
    if kvk and not (len(kvk) == 8 and kvk.isdigit()):
        raise invalid_argument([FieldViolation("kvk_number", "eight digits", rules.INVALID_CODE)])
    return NewBoard(
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        name=_required_text(request.name, "name"),
        kvk_number=kvk,
        begin=_date(request.begin_date, "begin_date"),
    )


def board_code(request: rio_pb2.GetBoardRequest) -> str:
    return _rio_code("board", request.board_code, "board_code")


def boards_query(request: rio_pb2.ListBoardsRequest) -> BoardsQuery:
    return BoardsQuery(_page(request.page))


def new_provider(request: rio_pb2.CreateProviderRequest) -> NewProvider:
    return NewProvider(
        provider_code=_rio_code("provider", request.provider_code, "provider_code", required=False),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        institution_code=_institution_code(request.institution_code, "institution_code", required=False),
        name=_required_text(request.name, "name"),
        sector=_sector(request.sector),
        begin=_date(request.begin_date, "begin_date"),
        end=_date(request.end_date, "end_date"),
    )


def provider_version(request: rio_pb2.UpdateProviderRequest) -> NewVersion:
    return NewVersion(
        code=_rio_code("provider", request.provider_code, "provider_code"),
        effective=_date(request.effective_date, "effective_date"),
        name=request.name.strip(),
    )


def _ended(kind: str) -> Callable[[rio_pb2.EndRecordRequest], EndRecord]:
    def decode(request: rio_pb2.EndRecordRequest) -> EndRecord:
        code = _rio_code(kind, request.code, "code") if kind else _record_code(request.code)
        return EndRecord(code, _date(request.end_date, "end_date"))

    return decode


def _record_on(kind: str) -> Callable[[rio_pb2.GetRecordRequest], RecordOn]:
    def decode(request: rio_pb2.GetRecordRequest) -> RecordOn:
        code = _rio_code(kind, request.code, "code") if kind else _record_code(request.code)
        return RecordOn(code, _date(request.reference_date, "reference_date"))

    return decode


# Providers and locations have RIO codes of a fixed shape; courses, offerings and uses (UUIDs) are free text.
end_provider, end_location, end_course, end_offering, end_location_use = (
    _ended(k) for k in ("provider", "location", "", "", "")
)
provider_on, location_on, course_on, offering_on = (_record_on(k) for k in ("provider", "location", "", ""))


def providers_query(request: rio_pb2.ListProvidersRequest) -> ProvidersQuery:
    return ProvidersQuery(
        day=_date(request.reference_date, "reference_date"),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        institution_code=_institution_code(request.institution_code, "institution_code", required=False),
        sector=request.sector,
        page=_page(request.page),
    )


def new_location(request: rio_pb2.CreateLocationRequest) -> NewLocation:
    return NewLocation(
        location_code=_rio_code("location", request.location_code, "location_code", required=False),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        name=_required_text(request.name, "name"),
        address=_address(request.address),
        begin=_date(request.begin_date, "begin_date"),
        end=_date(request.end_date, "end_date"),
    )


def location_version(request: rio_pb2.UpdateLocationRequest) -> NewVersion:
    return NewVersion(
        code=_rio_code("location", request.location_code, "location_code"),
        effective=_date(request.effective_date, "effective_date"),
        name=request.name.strip(),
        address=_address(request.address) if request.HasField("address") else None,
    )


def locations_query(request: rio_pb2.ListLocationsRequest) -> LocationsQuery:
    return LocationsQuery(
        day=_date(request.reference_date, "reference_date"),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        page=_page(request.page),
        provider_code=_rio_code("provider", request.provider_code, "provider_code", required=False),
    )


def new_location_use(request: rio_pb2.CreateLocationUseRequest) -> NewLocationUse:
    return NewLocationUse(
        location_code=_rio_code("location", request.location_code, "location_code"),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        begin=_date(request.begin_date, "begin_date"),
        end=_date(request.end_date, "end_date"),
    )


def location_uses_query(request: rio_pb2.ListLocationUsesRequest) -> LocationUsesQuery:
    return LocationUsesQuery(
        location_code=_rio_code("location", request.location_code, "location_code", required=False),
        board_code=_rio_code("board", request.board_code, "board_code", required=False),
        day=_date(request.reference_date, "reference_date"),
        all_periods=request.all_periods,
        page=_page(request.page),
    )


def new_course(request: rio_pb2.CreateCourseRequest) -> NewCourse:
    if request.code_system not in CodeSystem._value2member_map_:
        raise invalid_argument([FieldViolation("code_system", "choose CREBO, ISAT, ILT or PO", rules.INVALID_ENUM)])
    system = CodeSystem(request.code_system)
    try:
        code = validate_course_code(system.name, request.course_code)
    except InvalidIdentifierError as error:
        raise invalid_argument([FieldViolation("course_code", str(error), rules.INVALID_CODE)]) from None
    return NewCourse(
        course_code=code,
        unit_code=_rio_code("course_unit", request.unit_code, "unit_code", required=False),
        code_system=system,
        sector=_sector(request.sector) if request.sector else None,
        name=_required_text(request.name, "name"),
        level=request.level,
        begin=_date(request.begin_date, "begin_date"),
        end=_date(request.end_date, "end_date"),
    )


def courses_query(request: rio_pb2.ListCoursesRequest) -> CoursesQuery:
    return CoursesQuery(
        day=_date(request.reference_date, "reference_date"), sector=request.sector, page=_page(request.page)
    )


def new_offering(request: rio_pb2.CreateCourseOfferingRequest) -> NewOffering:
    return NewOffering(
        provider_code=_rio_code("provider", request.provider_code, "provider_code"),
        course_code=_record_code(request.course_code, "course_code"),
        # Optional, as in RIO: without one the course is offered at every location the board uses.
        location_code=_rio_code("location", request.location_code, "location_code", required=False),
        begin=_date(request.begin_date, "begin_date"),
        end=_date(request.end_date, "end_date"),
    )


def offerings_query(request: rio_pb2.ListCourseOfferingsRequest) -> OfferingsQuery:
    return OfferingsQuery(
        day=_date(request.reference_date, "reference_date"),
        provider_code=_rio_code("provider", request.provider_code, "provider_code", required=False),
        location_code=_rio_code("location", request.location_code, "location_code", required=False),
        course_code=request.course_code.strip(),
        page=_page(request.page),
    )


def offering_question(request: rio_pb2.CheckOfferingRequest) -> OfferingQuestion:
    return OfferingQuestion(
        institution_code=_institution_code(request.institution_code, "institution_code", required=True),
        course_code=_record_code(request.course_code, "course_code"),
        location_code=_rio_code("location", request.location_code, "location_code"),
        day=_date(request.reference_date, "reference_date"),
    )


def changes_query(request: rio_pb2.ListChangesRequest) -> ChangesQuery:
    """The changes feed pages by cursor, at most 500 items an answer (0 asks for the most)."""
    violations = []
    if (bad_cursor := paging.cursor_violation(request.after_cursor, "after_cursor")) is not None:
        violations.append(bad_cursor)
    if not 0 <= request.limit <= paging.MAX_PAGE_SIZE:
        violations.append(FieldViolation("limit", f"0 to {paging.MAX_PAGE_SIZE}", paging.INVALID_PAGE))
    if violations:
        raise invalid_argument(violations)
    return ChangesQuery(request.after_cursor, request.limit)


def stream_after(request: rio_pb2.StreamChangesRequest) -> int:
    if (bad_cursor := paging.cursor_violation(request.after_cursor, "after_cursor")) is not None:
        raise invalid_argument([bad_cursor])
    return request.after_cursor


def seed_order(request: common_pb2.SeedRegisterRequest) -> SeedOrder:
    return SeedOrder(request.size or "small", request.seed)


def purge_order(_request: common_pb2.PurgeSandboxRequest) -> PurgeOrder:
    return PurgeOrder()


# --- Rows -> messages ---


def validity(begin: dt.date, end: dt.date | None) -> common_pb2.ValidityPeriod:
    return common_pb2.ValidityPeriod(begin_date=to_proto_date(begin), end_date=to_proto_date(end))


def board(row: RioBoard) -> rio_pb2.Board:
    return rio_pb2.Board(
        board_code=row.board_code,
        name=row.name,
        kvk_number=row.kvk_number,
        validity=validity(row.begin_date, row.end_date),
    )


def provider(row: RioProvider) -> rio_pb2.Provider:
    return rio_pb2.Provider(
        provider_code=row.provider_code,
        board_code=row.board_code,
        institution_code=row.institution_code,
        name=row.name,
        sector=row.sector,  # type: ignore[arg-type]
        validity=validity(row.begin_date, row.end_date),
        version=row.version,
    )


def location(row: RioLocation) -> rio_pb2.Location:
    return rio_pb2.Location(
        location_code=row.location_code,
        board_code=row.board_code,
        name=row.name,
        address=common_pb2.Address(
            street=row.street,
            house_number=row.house_number,
            house_number_addition=row.house_number_addition,
            postcode=row.postcode,
            city=row.city,
            municipality_code=row.municipality_code,
            country_code=row.country_code,
        ),
        validity=validity(row.begin_date, row.end_date),
        version=row.version,
    )


def location_use(row: RioLocationUse) -> rio_pb2.LocationUse:
    return rio_pb2.LocationUse(
        use_id=row.use_id,
        location_code=row.location_code,
        board_code=row.board_code,
        validity=validity(row.begin_date, row.end_date),
    )


def course(row: RioCourse) -> rio_pb2.Course:
    return rio_pb2.Course(
        course_code=row.course_code,
        unit_code=row.unit_code,
        code_system=row.code_system,  # type: ignore[arg-type]
        sector=row.sector,  # type: ignore[arg-type]
        name=row.name,
        level=row.level,
        validity=validity(row.begin_date, row.end_date),
    )


def offering(row: RioCourseOffering) -> rio_pb2.CourseOffering:
    return rio_pb2.CourseOffering(
        offering_id=row.offering_id,
        provider_code=row.provider_code,
        course_code=row.course_code,
        location_code=row.location_code,
        validity=validity(row.begin_date, row.end_date),
    )


def _cut(listed: Listed[T]) -> tuple[list[T], common_pb2.PageResponse]:
    return paging.cut(listed.rows, listed.page, key=lambda row: int(getattr(row, "id")))  # noqa: B009


def boards(listed: Listed[RioBoard]) -> rio_pb2.ListBoardsResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListBoardsResponse(boards=[board(r) for r in rows], page=page)


def providers(listed: Listed[RioProvider]) -> rio_pb2.ListProvidersResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListProvidersResponse(providers=[provider(r) for r in rows], page=page)


def locations(listed: Listed[RioLocation]) -> rio_pb2.ListLocationsResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListLocationsResponse(locations=[location(r) for r in rows], page=page)


def location_uses(listed: Listed[RioLocationUse]) -> rio_pb2.ListLocationUsesResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListLocationUsesResponse(uses=[location_use(r) for r in rows], page=page)


def courses(listed: Listed[RioCourse]) -> rio_pb2.ListCoursesResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListCoursesResponse(courses=[course(r) for r in rows], page=page)


def offerings(listed: Listed[RioCourseOffering]) -> rio_pb2.ListCourseOfferingsResponse:
    rows, page = _cut(listed)
    return rio_pb2.ListCourseOfferingsResponse(offerings=[offering(r) for r in rows], page=page)


def offering_check(check: OfferingCheck) -> rio_pb2.CheckOfferingResponse:
    decision, facts = check.decision, check.facts
    answer = rio_pb2.CheckOfferingResponse(
        offered=decision.offered, reason_code=decision.reason_code, reason=decision.reason
    )
    if facts.offering is not None and decision.offered:
        answer.offering.CopyFrom(offering(facts.offering))
    if facts.provider is not None:
        answer.provider.CopyFrom(provider(facts.provider))
    if facts.course is not None:
        answer.course.CopyFrom(course(facts.course))
    return answer


def seeded(counts: dict[str, int]) -> common_pb2.SeedRegisterResponse:
    return common_pb2.SeedRegisterResponse(created=counts)


def purged(deleted: int) -> common_pb2.PurgeSandboxResponse:
    return common_pb2.PurgeSandboxResponse(deleted=deleted)


# --- The change log: records kept as the contract's bytes ---

# record table -> (the RioChange oneof field, its encoder); the log entry's record_kind names the same.
_RECORDS: dict[type, tuple[str, Callable[[Any], Message]]] = {
    RioBoard: ("board", board),
    RioProvider: ("provider", provider),
    RioLocation: ("location", location),
    RioCourse: ("course", course),
    RioCourseOffering: ("course_offering", offering),
    RioLocationUse: ("location_use", location_use),
}
_RECORD_FIELD = {
    rules.RecordKind.BOARD: "board",
    rules.RecordKind.PROVIDER: "provider",
    rules.RecordKind.LOCATION: "location",
    rules.RecordKind.COURSE: "course",
    rules.RecordKind.COURSE_OFFERING: "course_offering",
    rules.RecordKind.LOCATION_USE: "location_use",
}


def record_bytes(row: Record) -> bytes:
    """The record after a change, as the change log keeps it (the RioChange record message)."""
    _, encode = _RECORDS[type(row)]
    return encode(row).SerializeToString()


def seed_counts_bytes(counts: dict[str, int]) -> bytes:
    return seeded(counts).SerializeToString()


def seed_counts(data: bytes) -> dict[str, int]:
    return dict(common_pb2.SeedRegisterResponse.FromString(data).created)


def change(entry: RioChangeEntry) -> rio_pb2.RioChange:
    assert entry.cursor is not None
    message = rio_pb2.RioChange(
        cursor=entry.cursor,
        sandbox_id=entry.sandbox_id,
        record_kind=entry.record_kind,  # type: ignore[arg-type]
        change_kind=entry.change_kind,  # type: ignore[arg-type]
        code=entry.code,
        committed_at=to_timestamp(entry.committed_at),
    )
    getattr(message, _RECORD_FIELD[rules.RecordKind(entry.record_kind)]).MergeFromString(entry.record)
    return message


def changes(read: ChangesRead) -> rio_pb2.ListChangesResponse:
    """One page of the feed: next_cursor resumes after its last entry (or stays where the request was)."""
    entries: Sequence[RioChangeEntry] = read.entries[: read.limit]
    next_cursor = entries[-1].cursor or read.after if entries else read.after
    return rio_pb2.ListChangesResponse(
        changes=[change(e) for e in entries], next_cursor=next_cursor, has_more=len(read.entries) > read.limit
    )
