"""RIO's mutation path, guards and input checks over real gRPC on SQLite and PostgreSQL.

Twenty parallel retries of every mutating call with one idempotency key have
one effect and one answer; vendors cannot call the internal methods; input no
column could hold is refused, naming its field, before the database sees it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc
from google.protobuf.message import Message

from services._gen.registry.v1 import common_pb2, rio_pb2
from services.common import paging
from tests.conftest import SandboxHarness
from tests.helpers.rio import B1, all_changes, d, internal, refusal, register, rio

RETRIES = 20


async def retried(call: Callable[[], Awaitable[Message]]) -> Message:
    """Sends one request RETRIES times at once; every answer must be the same."""
    answers = await asyncio.gather(*(call() for _ in range(RETRIES)))
    assert all(answer == answers[0] for answer in answers)
    return answers[0]


async def test_parallel_retries_of_every_mutating_call_have_one_effect_and_one_answer(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, admin, b1 = rio(sandbox), sandbox.metadata(), sandbox.metadata(x_board_code=B1)

    async def logged() -> int:
        return len(await all_changes(stub, admin))

    async def once(call: Callable[[], Awaitable[Message]], changes: int = 1) -> Message:
        before = await logged()
        answer = await retried(call)
        assert await logged() == before + changes, call
        return answer

    board = await once(
        lambda: stub.CreateBoard(rio_pb2.CreateBoardRequest(idempotency_key="b", name="Nieuw bestuur"), metadata=admin)
    )
    assert isinstance(board, rio_pb2.Board) and board.board_code == "100B003"
    await once(
        lambda: stub.CreateCourse(
            rio_pb2.CreateCourseRequest(
                idempotency_key="c",
                course_code="25001",
                code_system=rio_pb2.COURSE_CODE_SYSTEM_CREBO,
                name="Kok",
                level="MBO-2",
                begin_date=d(2000, 8, 1),
            ),
            metadata=admin,
        )
    )
    provider = await once(
        lambda: stub.CreateProvider(
            rio_pb2.CreateProviderRequest(
                idempotency_key="p", name="CBS De Ark", sector=common_pb2.SECTOR_PO, begin_date=d(2021, 8, 1)
            ),
            metadata=b1,
        )
    )
    assert isinstance(provider, rio_pb2.Provider)
    location = await once(
        lambda: stub.CreateLocation(
            rio_pb2.CreateLocationRequest(idempotency_key="l", name="Dependance", begin_date=d(2021, 8, 1)), metadata=b1
        ),
        changes=2,  # the location and its board's use of it
    )
    assert isinstance(location, rio_pb2.Location)
    offering = await once(
        lambda: stub.CreateCourseOffering(
            rio_pb2.CreateCourseOfferingRequest(
                idempotency_key="o",
                provider_code=provider.provider_code,
                course_code="BAO",
                location_code=location.location_code,
                begin_date=d(2021, 8, 1),
            ),
            metadata=b1,
        )
    )
    assert isinstance(offering, rio_pb2.CourseOffering)
    renamed = await once(
        lambda: stub.UpdateProvider(
            rio_pb2.UpdateProviderRequest(
                idempotency_key="up", provider_code=provider.provider_code, effective_date=d(2024, 8, 1), name="Ark"
            ),
            metadata=b1,
        )
    )
    assert isinstance(renamed, rio_pb2.Provider) and renamed.version == 2
    moved = await once(
        lambda: stub.UpdateLocation(
            rio_pb2.UpdateLocationRequest(
                idempotency_key="ul",
                location_code=location.location_code,
                effective_date=d(2024, 8, 1),
                name="Bijgebouw",
            ),
            metadata=b1,
        )
    )
    assert isinstance(moved, rio_pb2.Location) and moved.version == 2
    # A handover of board 2's location to board 1: board 2's use ends, board 1's begins the day after.
    [l2_use] = (
        await stub.ListLocationUses(rio_pb2.ListLocationUsesRequest(location_code=codes["l2"]), metadata=admin)
    ).uses
    ended_use = await once(
        lambda: stub.EndLocationUse(
            rio_pb2.EndRecordRequest(idempotency_key="eu", code=l2_use.use_id, end_date=d(2025, 7, 31)),
            metadata=admin,
        )
    )
    assert isinstance(ended_use, rio_pb2.LocationUse) and ended_use.validity.end_date == d(2025, 7, 31)
    taken_over = await once(
        lambda: stub.CreateLocationUse(
            rio_pb2.CreateLocationUseRequest(idempotency_key="cu", location_code=codes["l2"], begin_date=d(2025, 8, 1)),
            metadata=b1,
        )
    )
    assert isinstance(taken_over, rio_pb2.LocationUse) and taken_over.board_code == B1
    # Ending, in an order the rules allow: the offering, its location and provider, then the course.
    ends: list[tuple[Callable[..., Awaitable[Message]], str, object]] = [
        (stub.EndCourseOffering, offering.offering_id, b1),
        (stub.EndLocation, location.location_code, b1),
        (stub.EndProvider, provider.provider_code, b1),
        (stub.EndCourse, "25001", admin),
    ]
    for method, code, metadata in ends:
        request = rio_pb2.EndRecordRequest(idempotency_key=f"end-{code}", code=code, end_date=d(2031, 7, 31))
        # Ending the location ends its open use too.
        changes = 2 if method == stub.EndLocation else 1
        ended = await once(lambda: method(request, metadata=metadata), changes)  # noqa: B023 - awaited in this iteration
        assert ended.validity.end_date == request.end_date  # type: ignore[attr-defined]

    seeded = await retried(
        lambda: stub.SeedRegister(
            common_pb2.SeedRegisterRequest(idempotency_key="s", size="small", seed=3), metadata=internal(sandbox)
        )
    )
    assert isinstance(seeded, common_pb2.SeedRegisterResponse)
    providers = await stub.ListProviders(
        rio_pb2.ListProvidersRequest(reference_date=d(2025, 10, 1), page=common_pb2.PageRequest(page_size=500)),
        metadata=admin,
    )
    assert len(providers.providers) == seeded.created["providers"] + 2  # 25BE and CBS De Ark, seeded once

    purged = await retried(
        lambda: stub.PurgeSandbox(common_pb2.PurgeSandboxRequest(idempotency_key="x"), metadata=internal(sandbox))
    )
    assert isinstance(purged, common_pb2.PurgeSandboxResponse) and purged.deleted > len(providers.providers)
    assert await logged() == 0
    assert codes  # the register existed before the purge


async def test_a_vendor_key_is_refused_on_every_internal_method(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, vendor = rio(sandbox), sandbox.metadata()
    for call in (
        stub.SeedRegister(common_pb2.SeedRegisterRequest(size="small", seed=1), metadata=vendor),
        stub.PurgeSandbox(common_pb2.PurgeSandboxRequest(idempotency_key="x"), metadata=vendor),
    ):
        code, reason, _ = await refusal(call)
        assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "AUT401")
    # Nothing was seeded or purged (the register's seven records and its two location uses).
    assert len(await all_changes(stub, vendor)) == 9
    provider = await stub.GetProvider(rio_pb2.GetRecordRequest(code=codes["provider"]), metadata=vendor)
    assert provider.institution_code == "25BE"


async def test_input_no_column_could_hold_is_refused_naming_its_field(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, admin, b1 = rio(sandbox), sandbox.metadata(), sandbox.metadata(x_board_code=B1)
    before = await all_changes(stub, admin)
    # A page token that decodes to more digits than any row id (the old code handed such numbers to the database).
    too_far = paging.token_after("9" * 30)
    cases: list[tuple[Awaitable[Message], list[tuple[str, str]]]] = [
        (
            stub.CreateBoard(rio_pb2.CreateBoardRequest(name="Stichting\x00"), metadata=admin),
            [("name", "SBX-INVALID-TEXT")],
        ),
        (stub.CreateBoard(rio_pb2.CreateBoardRequest(name="S" * 201), metadata=admin), [("name", "SBX-TOO-LONG")]),
        (
            stub.CreateProvider(
                rio_pb2.CreateProviderRequest(idempotency_key="k" * 201, name="X", sector=common_pb2.SECTOR_PO),
                metadata=b1,
            ),
            [("idempotency_key", "SBX-INVALID-IDEMPOTENCY-KEY")],
        ),
        (
            stub.CreateLocation(
                rio_pb2.CreateLocationRequest(name="X", address=common_pb2.Address(street="Dorp\x00straat")),
                metadata=b1,
            ),
            [("address.street", "SBX-INVALID-TEXT")],
        ),
        (
            stub.UpdateLocation(
                rio_pb2.UpdateLocationRequest(location_code=codes["l1"], address=common_pb2.Address(city="A" * 101)),
                metadata=b1,
            ),
            [("address.city", "SBX-TOO-LONG")],
        ),
        (stub.GetCourse(rio_pb2.GetRecordRequest(code="BA\x00O"), metadata=admin), [("code", "SBX-INVALID-TEXT")]),
        (stub.EndCourse(rio_pb2.EndRecordRequest(code="9" * 37), metadata=admin), [("code", "SBX-TOO-LONG")]),
        (
            stub.ListCourseOfferings(rio_pb2.ListCourseOfferingsRequest(course_code="\x00"), metadata=admin),
            [("course_code", "SBX-INVALID-TEXT")],
        ),
        (
            stub.CheckOffering(
                rio_pb2.CheckOfferingRequest(institution_code="25BE", course_code="B\x00", location_code=codes["l1"]),
                metadata=admin,
            ),
            [("course_code", "SBX-INVALID-TEXT")],
        ),
        (
            stub.ListProviders(
                rio_pb2.ListProvidersRequest(page=common_pb2.PageRequest(page_token="12")), metadata=admin
            ),
            [("page.page_token", "SBX-INVALID-PAGE")],
        ),
        (
            stub.ListLocations(
                rio_pb2.ListLocationsRequest(page=common_pb2.PageRequest(page_token=too_far)), metadata=admin
            ),
            [("page.page_token", "SBX-INVALID-PAGE")],
        ),
        (
            stub.ListBoards(rio_pb2.ListBoardsRequest(page=common_pb2.PageRequest(page_size=501)), metadata=admin),
            [("page.page_size", "SBX-INVALID-PAGE")],
        ),
        (stub.ListChanges(rio_pb2.ListChangesRequest(limit=501), metadata=admin), [("limit", "SBX-INVALID-PAGE")]),
        (
            stub.ListChanges(rio_pb2.ListChangesRequest(after_cursor=-1, limit=-1), metadata=admin),
            [("after_cursor", "SBX-INVALID-CURSOR"), ("limit", "SBX-INVALID-PAGE")],
        ),
    ]
    for call, expected in cases:
        code, _, fields = await refusal(call)
        assert (code, fields) == (grpc.StatusCode.INVALID_ARGUMENT, expected)
    assert await all_changes(stub, admin) == before
