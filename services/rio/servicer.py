"""RioService over gRPC: resolve the caller, decode the request, call rules and store, encode the answer."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from google.protobuf.message import Message
from google.type.date_pb2 import Date
from sqlalchemy import text
from sqlmodel import Session

from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc
from services.common import idempotency
from services.common.caller import Caller, CallerResolver
from services.common.database import Database, lock_log_for_append
from services.common.dates import from_proto_date
from services.common.errors import FieldViolation, invalid_argument
from services.common.identifiers import (
    InvalidIdentifierError,
    validate_course_code,
    validate_institution_code,
    validate_rio_code,
)
from services.common.peers import Peers
from services.common.sandbox_client import SandboxClient
from services.common.seeding import PROFILES
from services.common.wakeup import LogWakeup, follow_log
from services.rio import rules, seed, store
from services.rio.tables import RioIdempotentResponse

R = TypeVar("R", bound=Message)

CHANGE_LOG = "rio_change"
# Entries one stream read fetches; small enough to start sending quickly.
STREAM_BATCH = 500

_SYSTEM_NAMES = {
    rio_pb2.COURSE_CODE_SYSTEM_CREBO: "CREBO",
    rio_pb2.COURSE_CODE_SYSTEM_ISAT: "ISAT",
    rio_pb2.COURSE_CODE_SYSTEM_ILT: "ILT",
    rio_pb2.COURSE_CODE_SYSTEM_PO: "PO",
}
# Which sector a course code system belongs to, and the level prefixes of that sector.
_SYSTEM_SECTOR = {
    rio_pb2.COURSE_CODE_SYSTEM_CREBO: common_pb2.SECTOR_MBO,
    rio_pb2.COURSE_CODE_SYSTEM_ISAT: common_pb2.SECTOR_HO,
    rio_pb2.COURSE_CODE_SYSTEM_ILT: common_pb2.SECTOR_VO,
    rio_pb2.COURSE_CODE_SYSTEM_PO: common_pb2.SECTOR_PO,
}
LEVELS = {
    common_pb2.SECTOR_PO: ("PO-BAO",),
    common_pb2.SECTOR_VO: ("VO-VMBO-BB", "VO-VMBO-KB", "VO-VMBO-GL", "VO-VMBO-TL", "VO-HAVO", "VO-VWO"),
    common_pb2.SECTOR_MBO: ("MBO-1", "MBO-2", "MBO-3", "MBO-4"),
    common_pb2.SECTOR_HO: ("HBO-AD", "HBO-BA", "HBO-MA", "WO-BA", "WO-MA"),
}


def serialise_writers(session: Session) -> None:
    """Makes RIO's writers take turns, first thing in their transaction.

    Code assignment, overlap checks and the idempotency replay then read a
    register no other writer changes until this one commits, and change-log
    cursors commit in order. PostgreSQL: the change log's advisory lock.
    SQLite: a write statement (matching no row) takes the database's write
    lock now rather than at the first insert, like BEGIN IMMEDIATE.
    """
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text("UPDATE rio_seed_run SET seed = seed WHERE 0"))
    else:
        lock_log_for_append(session, CHANGE_LOG)


def _date(value: Date, field: str, *, required: bool = False) -> dt.date | None:
    try:
        day = from_proto_date(value)
    except ValueError:
        raise invalid_argument([FieldViolation(field, "not a calendar date", "INVALID_DATE")]) from None
    if day is None and required:
        raise invalid_argument([FieldViolation(field, "required", rules.REQUIRED)])
    return day


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


def _required_text(value: str, field: str, limit: int = 200) -> str:
    if not value.strip():
        raise invalid_argument([FieldViolation(field, "required", rules.REQUIRED)])
    if len(value) > limit:
        raise invalid_argument([FieldViolation(field, f"at most {limit} characters", "TOO_LONG")])
    return value.strip()


def _optional_text(value: str, field: str, limit: int = 200) -> str:
    if len(value) > limit:
        raise invalid_argument([FieldViolation(field, f"at most {limit} characters", "TOO_LONG")])
    return value.strip()


def _sector(value: int, field: str = "sector") -> int:
    if value not in LEVELS:
        raise invalid_argument(
            [FieldViolation(field, "choose SECTOR_PO, SECTOR_VO, SECTOR_MBO or SECTOR_HO", "INVALID_ENUM")]
        )
    return value


def _record_code(value: str, field: str = "code") -> str:
    if not value or len(value) > 36:
        raise invalid_argument([FieldViolation(field, "required, at most 36 characters", rules.REQUIRED)])
    return value


def _address(address: common_pb2.Address, field: str = "address") -> store.AddressFields:
    fields = store.AddressFields.of(address)
    violations = []
    if len(fields.postcode) > 6:
        violations.append(FieldViolation(f"{field}.postcode", "a Dutch postcode like 1234AB", "INVALID_POSTCODE"))
    if fields.municipality_code and not (len(fields.municipality_code) == 4 and fields.municipality_code.isdigit()):
        violations.append(FieldViolation(f"{field}.municipality_code", "four digits", "INVALID_CODE"))
    if len(fields.country_code) != 2:
        violations.append(FieldViolation(f"{field}.country_code", "ISO 3166-1 alpha-2", "INVALID_CODE"))
    if len(fields.street) > 200 or len(fields.city) > 100 or len(fields.house_number_addition) > 10:
        violations.append(FieldViolation(field, "street, city or addition too long", "TOO_LONG"))
    if violations:
        raise invalid_argument(violations)
    return fields


def _period(begin: dt.date, end: dt.date | None) -> rules.Period:
    violations = rules.check_period(begin, end)
    if violations:
        raise invalid_argument(violations)
    return rules.Period(begin, end)


class RioServiceServicer(rio_pb2_grpc.RioServiceServicer):
    """The RIO register over gRPC. Every mutation is one transaction: idempotency, change, log entry."""

    def __init__(self, database: Database, peers: Peers, internal_token: str, poll_seconds: float = 1.0) -> None:
        self._db = database
        self._peers = peers
        self.sandboxes = SandboxClient(lambda: peers.channel("sandbox"), internal_token)
        self.callers = CallerResolver(self.sandboxes.sandbox_id_for_key, internal_token)
        self.wakeup = LogWakeup(poll_seconds)

    # --- plumbing ---

    async def _caller(self, context: grpc.aio.ServicerContext) -> tuple[Caller, str]:
        caller = await self.callers.resolve(context)
        return caller, caller.require_sandbox()

    async def _day(self, sandbox_id: str, value: Date, field: str) -> dt.date:
        """The given date, or the sandbox clock's today (the default peildatum)."""
        day = _date(value, field)
        return day if day is not None else await self.sandboxes.today(sandbox_id)

    async def _mutate(
        self,
        method: str,
        sandbox_id: str,
        request: Message,
        key: str,
        response_type: type[R],
        work: Callable[[Session], R],
    ) -> R:
        """Runs one change under its idempotency key, in one transaction with its change-log entry."""

        def transaction(session: Session) -> tuple[R, bool]:
            serialise_writers(session)
            stored = idempotency.replay(
                session, RioIdempotentResponse, sandbox_id=sandbox_id, method=method, request=request, key=key
            )
            if stored is not None:
                return response_type.FromString(stored), False
            response = work(session)
            idempotency.remember(
                session,
                RioIdempotentResponse,
                sandbox_id=sandbox_id,
                method=method,
                request=request,
                key=key,
                response=response,
            )
            return response, True

        response, changed = await self._db.run(transaction)
        if changed:
            self.wakeup.notify()
        return response

    # --- Boards ---

    async def CreateBoard(
        self, request: rio_pb2.CreateBoardRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Board:
        caller, sandbox_id = await self._caller(context)
        rules.require_admin(caller.board_code, "create school boards")
        code = _rio_code("board", request.board_code, "board_code", required=False)
        name = _required_text(request.name, "name")
        kvk = request.kvk_number
        if kvk and not (len(kvk) == 8 and kvk.isdigit()):
            raise invalid_argument([FieldViolation("kvk_number", "eight digits", rules.INVALID_CODE)])
        begin = await self._day(sandbox_id, request.begin_date, "begin_date")
        return await self._mutate(
            "CreateBoard",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Board,
            lambda s: store.create_board(
                s, sandbox_id=sandbox_id, board_code=code, name=name, kvk_number=kvk, begin=begin
            ),
        )

    async def GetBoard(self, request: rio_pb2.GetBoardRequest, context: grpc.aio.ServicerContext) -> rio_pb2.Board:
        _, sandbox_id = await self._caller(context)
        code = _rio_code("board", request.board_code, "board_code")
        return await self._db.run(lambda s: store.get_board(s, sandbox_id=sandbox_id, board_code=code))

    async def ListBoards(
        self, request: rio_pb2.ListBoardsRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListBoardsResponse:
        _, sandbox_id = await self._caller(context)
        page = store.page_of(request.page)
        return await self._db.run(lambda s: store.list_boards(s, sandbox_id=sandbox_id, page=page))

    # --- Providers ---

    async def CreateProvider(
        self, request: rio_pb2.CreateProviderRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Provider:
        caller, sandbox_id = await self._caller(context)
        board_code = _rio_code("board", request.board_code or (caller.board_code or ""), "board_code")
        rules.require_owner(caller.board_code, board_code, field="board_code")
        new = store.NewProvider(
            provider_code=_rio_code("provider", request.provider_code, "provider_code", required=False),
            board_code=board_code,
            institution_code=_institution_code(request.institution_code, "institution_code", required=False),
            name=_required_text(request.name, "name"),
            sector=_sector(request.sector),
            period=_period(
                await self._day(sandbox_id, request.begin_date, "begin_date"), _date(request.end_date, "end_date")
            ),
        )
        return await self._mutate(
            "CreateProvider",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Provider,
            lambda s: store.create_provider(s, sandbox_id=sandbox_id, acting_board=caller.board_code, new=new),
        )

    async def UpdateProvider(
        self, request: rio_pb2.UpdateProviderRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Provider:
        caller, sandbox_id = await self._caller(context)
        code = _rio_code("provider", request.provider_code, "provider_code")
        name = _optional_text(request.name, "name")
        effective = await self._day(sandbox_id, request.effective_date, "effective_date")
        return await self._mutate(
            "UpdateProvider",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Provider,
            lambda s: store.update_provider(
                s, sandbox_id=sandbox_id, acting_board=caller.board_code, code=code, effective=effective, name=name
            ),
        )

    async def EndProvider(
        self, request: rio_pb2.EndRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Provider:
        caller, sandbox_id = await self._caller(context)
        code = _rio_code("provider", request.code, "code")
        end = await self._day(sandbox_id, request.end_date, "end_date")
        return await self._mutate(
            "EndProvider",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Provider,
            lambda s: store.end_provider(s, sandbox_id=sandbox_id, acting_board=caller.board_code, code=code, end=end),
        )

    async def GetProvider(
        self, request: rio_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Provider:
        _, sandbox_id = await self._caller(context)
        code = _rio_code("provider", request.code, "code")
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(lambda s: store.get_provider(s, sandbox_id=sandbox_id, code=code, day=day))

    async def ListProviders(
        self, request: rio_pb2.ListProvidersRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListProvidersResponse:
        _, sandbox_id = await self._caller(context)
        board_code = _rio_code("board", request.board_code, "board_code", required=False)
        institution = _institution_code(request.institution_code, "institution_code", required=False)
        page = store.page_of(request.page)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.list_providers(
                s,
                sandbox_id=sandbox_id,
                day=day,
                board_code=board_code,
                institution_code=institution,
                sector=request.sector,
                page=page,
            )
        )

    # --- Locations ---

    async def CreateLocation(
        self, request: rio_pb2.CreateLocationRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Location:
        caller, sandbox_id = await self._caller(context)
        board_code = _rio_code("board", request.board_code or (caller.board_code or ""), "board_code")
        rules.require_owner(caller.board_code, board_code, field="board_code")
        code = _rio_code("location", request.location_code, "location_code", required=False)
        name = _required_text(request.name, "name")
        address = _address(request.address)
        period = _period(
            await self._day(sandbox_id, request.begin_date, "begin_date"), _date(request.end_date, "end_date")
        )
        return await self._mutate(
            "CreateLocation",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Location,
            lambda s: store.create_location(
                s,
                sandbox_id=sandbox_id,
                acting_board=caller.board_code,
                location_code=code,
                board_code=board_code,
                name=name,
                address=address,
                period=period,
            ),
        )

    async def UpdateLocation(
        self, request: rio_pb2.UpdateLocationRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Location:
        caller, sandbox_id = await self._caller(context)
        code = _rio_code("location", request.location_code, "location_code")
        name = _optional_text(request.name, "name")
        address = _address(request.address) if request.HasField("address") else None
        effective = await self._day(sandbox_id, request.effective_date, "effective_date")
        return await self._mutate(
            "UpdateLocation",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Location,
            lambda s: store.update_location(
                s,
                sandbox_id=sandbox_id,
                acting_board=caller.board_code,
                code=code,
                effective=effective,
                name=name,
                address=address,
            ),
        )

    async def EndLocation(
        self, request: rio_pb2.EndRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Location:
        caller, sandbox_id = await self._caller(context)
        code = _rio_code("location", request.code, "code")
        end = await self._day(sandbox_id, request.end_date, "end_date")
        return await self._mutate(
            "EndLocation",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Location,
            lambda s: store.end_location(s, sandbox_id=sandbox_id, acting_board=caller.board_code, code=code, end=end),
        )

    async def GetLocation(
        self, request: rio_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Location:
        _, sandbox_id = await self._caller(context)
        code = _rio_code("location", request.code, "code")
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(lambda s: store.get_location(s, sandbox_id=sandbox_id, code=code, day=day))

    async def ListLocations(
        self, request: rio_pb2.ListLocationsRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListLocationsResponse:
        _, sandbox_id = await self._caller(context)
        board_code = _rio_code("board", request.board_code, "board_code", required=False)
        page = store.page_of(request.page)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.list_locations(s, sandbox_id=sandbox_id, day=day, board_code=board_code, page=page)
        )

    # --- Courses ---

    async def CreateCourse(
        self, request: rio_pb2.CreateCourseRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.Course:
        caller, sandbox_id = await self._caller(context)
        rules.require_admin(caller.board_code, "add courses to the national catalogue")
        system = _SYSTEM_NAMES.get(request.code_system)
        if system is None:
            raise invalid_argument([FieldViolation("code_system", "choose CREBO, ISAT, ILT or PO", "INVALID_ENUM")])
        try:
            code = validate_course_code(system, request.course_code)
        except InvalidIdentifierError as error:
            raise invalid_argument([FieldViolation("course_code", str(error), rules.INVALID_CODE)]) from None
        sector = request.sector or _SYSTEM_SECTOR[request.code_system]
        if sector != _SYSTEM_SECTOR[request.code_system]:
            raise invalid_argument(
                [FieldViolation("sector", f"{system} courses belong to another sector", "INVALID_ENUM")]
            )
        if request.level not in LEVELS[sector]:
            raise invalid_argument(
                [FieldViolation("level", f"one of {', '.join(LEVELS[sector])} for this sector", "INVALID_LEVEL")]
            )
        new = store.NewCourse(
            course_code=code,
            code_system=request.code_system,
            sector=sector,
            name=_required_text(request.name, "name"),
            level=request.level,
            period=_period(
                await self._day(sandbox_id, request.begin_date, "begin_date"), _date(request.end_date, "end_date")
            ),
        )
        return await self._mutate(
            "CreateCourse",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Course,
            lambda s: store.create_course(s, sandbox_id=sandbox_id, new=new),
        )

    async def EndCourse(self, request: rio_pb2.EndRecordRequest, context: grpc.aio.ServicerContext) -> rio_pb2.Course:
        caller, sandbox_id = await self._caller(context)
        rules.require_admin(caller.board_code, "end courses of the national catalogue")
        code = _record_code(request.code)
        end = await self._day(sandbox_id, request.end_date, "end_date")
        return await self._mutate(
            "EndCourse",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.Course,
            lambda s: store.end_course(s, sandbox_id=sandbox_id, code=code, end=end),
        )

    async def GetCourse(self, request: rio_pb2.GetRecordRequest, context: grpc.aio.ServicerContext) -> rio_pb2.Course:
        _, sandbox_id = await self._caller(context)
        code = _record_code(request.code)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(lambda s: store.get_course(s, sandbox_id=sandbox_id, code=code, day=day))

    async def ListCourses(
        self, request: rio_pb2.ListCoursesRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListCoursesResponse:
        _, sandbox_id = await self._caller(context)
        page = store.page_of(request.page)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.list_courses(s, sandbox_id=sandbox_id, day=day, sector=request.sector, page=page)
        )

    # --- Course offerings ---

    async def CreateCourseOffering(
        self, request: rio_pb2.CreateCourseOfferingRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.CourseOffering:
        caller, sandbox_id = await self._caller(context)
        provider_code = _rio_code("provider", request.provider_code, "provider_code")
        location_code = _rio_code("location", request.location_code, "location_code")
        course_code = _record_code(request.course_code, "course_code")
        period = _period(
            await self._day(sandbox_id, request.begin_date, "begin_date"), _date(request.end_date, "end_date")
        )
        return await self._mutate(
            "CreateCourseOffering",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.CourseOffering,
            lambda s: store.create_offering(
                s,
                sandbox_id=sandbox_id,
                acting_board=caller.board_code,
                provider_code=provider_code,
                course_code=course_code,
                location_code=location_code,
                period=period,
            ),
        )

    async def EndCourseOffering(
        self, request: rio_pb2.EndRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.CourseOffering:
        caller, sandbox_id = await self._caller(context)
        offering_id = _record_code(request.code)
        end = await self._day(sandbox_id, request.end_date, "end_date")
        return await self._mutate(
            "EndCourseOffering",
            sandbox_id,
            request,
            request.idempotency_key,
            rio_pb2.CourseOffering,
            lambda s: store.end_offering(
                s, sandbox_id=sandbox_id, acting_board=caller.board_code, offering_id=offering_id, end=end
            ),
        )

    async def GetCourseOffering(
        self, request: rio_pb2.GetRecordRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.CourseOffering:
        _, sandbox_id = await self._caller(context)
        offering_id = _record_code(request.code)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.get_offering(s, sandbox_id=sandbox_id, offering_id=offering_id, day=day)
        )

    async def ListCourseOfferings(
        self, request: rio_pb2.ListCourseOfferingsRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListCourseOfferingsResponse:
        _, sandbox_id = await self._caller(context)
        provider_code = _rio_code("provider", request.provider_code, "provider_code", required=False)
        location_code = _rio_code("location", request.location_code, "location_code", required=False)
        course_code = _optional_text(request.course_code, "course_code", 20)
        page = store.page_of(request.page)
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.list_offerings(
                s,
                sandbox_id=sandbox_id,
                day=day,
                provider_code=provider_code,
                location_code=location_code,
                course_code=course_code,
                page=page,
            )
        )

    async def CheckOffering(
        self, request: rio_pb2.CheckOfferingRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.CheckOfferingResponse:
        _, sandbox_id = await self._caller(context)
        institution = _institution_code(request.institution_code, "institution_code", required=True)
        location_code = _rio_code("location", request.location_code, "location_code")
        course_code = _record_code(request.course_code, "course_code")
        day = await self._day(sandbox_id, request.reference_date, "reference_date")
        return await self._db.run(
            lambda s: store.check_offering(
                s,
                sandbox_id=sandbox_id,
                institution_code=institution,
                course_code=course_code,
                location_code=location_code,
                day=day,
            )
        )

    # --- Change log ---

    async def ListChanges(
        self, request: rio_pb2.ListChangesRequest, context: grpc.aio.ServicerContext
    ) -> rio_pb2.ListChangesResponse:
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        if request.after_cursor < 0 or request.limit < 0:
            raise invalid_argument([FieldViolation("after_cursor", "must not be negative", "INVALID_CURSOR")])
        limit = min(request.limit or store.MAX_CHANGES_PER_ANSWER, store.MAX_CHANGES_PER_ANSWER)
        # One more than asked tells whether more are waiting.
        changes = await self._db.run(
            lambda s: store.list_changes(s, sandbox_id=caller.sandbox_id, after=request.after_cursor, limit=limit + 1)
        )
        has_more = len(changes) > limit
        changes = changes[:limit]
        next_cursor = changes[-1].cursor if changes else request.after_cursor
        return rio_pb2.ListChangesResponse(changes=changes, next_cursor=next_cursor, has_more=has_more)

    async def StreamChanges(
        self, request: rio_pb2.StreamChangesRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[rio_pb2.RioChange]:
        # An internal caller without a sandbox (ROD) follows every sandbox; each change names its own.
        caller = await self.callers.resolve(context, all_sandboxes_ok=True)
        if request.after_cursor < 0:
            raise invalid_argument([FieldViolation("after_cursor", "must not be negative", "INVALID_CURSOR")])

        async def read_after(cursor: int) -> list[rio_pb2.RioChange]:
            return await self._db.run(
                lambda s: store.list_changes(s, sandbox_id=caller.sandbox_id, after=cursor, limit=STREAM_BATCH)
            )

        async for change in follow_log(read_after, lambda c: c.cursor, request.after_cursor, self.wakeup):
            yield change

    # --- Sandbox lifecycle (internal) ---

    async def SeedRegister(
        self, request: common_pb2.SeedRegisterRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.SeedRegisterResponse:
        caller, sandbox_id = await self._caller(context)
        rules.require_admin(caller.board_code, "seed the register")
        size = request.size or "small"
        if size not in PROFILES:
            raise invalid_argument([FieldViolation("size", f"one of {', '.join(PROFILES)}", "INVALID_SIZE")])
        # A sandbox is seeded once: whatever the key, size or seed number, a later call gets the first counts.
        first = await self._db.run(lambda s: seed.existing_run(s, sandbox_id))
        if first is not None:
            return first
        # Building the plan takes seconds at full size; it runs before the write transaction, not inside it.
        planned = await asyncio.to_thread(seed.plan, PROFILES[size], request.seed)

        def write(session: Session) -> common_pb2.SeedRegisterResponse:
            serialise_writers(session)
            return seed.apply(session, sandbox_id=sandbox_id, plan=planned, size=size, seed=request.seed)

        response = await self._db.run(write)
        self.wakeup.notify()
        return response

    async def PurgeSandbox(
        self, request: common_pb2.PurgeSandboxRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.PurgeSandboxResponse:
        caller, sandbox_id = await self._caller(context)
        rules.require_admin(caller.board_code, "purge the sandbox")
        return await self._mutate(
            "PurgeSandbox",
            sandbox_id,
            request,
            request.idempotency_key,
            common_pb2.PurgeSandboxResponse,
            lambda s: common_pb2.PurgeSandboxResponse(deleted=store.purge(s, sandbox_id=sandbox_id)),
        )
