"""Onderwijslocatiegebruik over real gRPC on SQLite and PostgreSQL: boards use a location over periods, one at a
time, and the use on the date decides who may offer courses there and change it."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.type.date_pb2 import Date

from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc, rod_pb2
from services.common.errors import read_details
from tests.conftest import SandboxHarness
from tests.helpers.rio import B1, B2, all_changes, d, every_page, refusal, register, rio
from tests.helpers.rod_world import rod_in

TEEN = dt.date(2014, 5, 5)


async def uses_of(stub: rio_pb2_grpc.RioServiceStub, md: object, location_code: str) -> list[rio_pb2.LocationUse]:
    """Every use of a location, in every period, oldest first."""

    async def fetch(page: common_pb2.PageRequest) -> rio_pb2.ListLocationUsesResponse:
        return await stub.ListLocationUses(
            rio_pb2.ListLocationUsesRequest(location_code=location_code, all_periods=True, page=page), metadata=md
        )

    return await every_page(fetch, "uses")


async def test_a_location_changes_hands_and_the_use_on_the_date_decides_who_may_teach_and_change_it(
    sandbox: SandboxHarness,
) -> None:
    codes = await register(sandbox)
    stub, admin = rio(sandbox), sandbox.metadata()
    b1, b2 = sandbox.metadata(x_board_code=B1), sandbox.metadata(x_board_code=B2)
    l1 = codes["l1"]

    # CreateLocation started the registering board's use for the location's whole period.
    [first] = await uses_of(stub, admin, l1)
    assert (first.board_code, first.validity.begin_date, first.validity.HasField("end_date")) == (
        B1,
        d(2020, 8, 1),
        False,
    )

    # While board 1 uses it, board 2 cannot start a use that overlaps; board 1 cannot use it twice.
    taken = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code=l1, begin_date=d(2023, 8, 1)), metadata=b2
    )
    assert await refusal(taken) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SBX-LOCATION-IN-USE",
        [("begin_date", "SBX-LOCATION-IN-USE")],
    )
    twice = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code=l1, begin_date=d(2023, 8, 1)), metadata=b1
    )
    assert await refusal(twice) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SBX-VALIDITY-OVERLAP",
        [("begin_date", "SBX-VALIDITY-OVERLAP")],
    )
    # Only the using board (or the admin) ends a use.
    foreign_end = stub.EndLocationUse(rio_pb2.EndRecordRequest(code=first.use_id, end_date=d(2023, 7, 31)), metadata=b2)
    assert (await refusal(foreign_end))[:2] == (grpc.StatusCode.PERMISSION_DENIED, "AUT401")

    # The handover: board 1 ends its use, board 2 starts the day after.
    ended = await stub.EndLocationUse(
        rio_pb2.EndRecordRequest(idempotency_key="end-1", code=first.use_id, end_date=d(2023, 7, 31)), metadata=b1
    )
    assert ended.validity.end_date == d(2023, 7, 31)
    second = await stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(idempotency_key="use-2", location_code=l1, begin_date=d(2023, 8, 1)),
        metadata=b2,
    )
    assert second.board_code == B2 and second.location_code == l1
    again = await stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(idempotency_key="use-2", location_code=l1, begin_date=d(2023, 8, 1)),
        metadata=b2,
    )
    assert again == second  # a retried key gets the first answer, not a refusal
    # Board 1 cannot lengthen its ended use into board 2's.
    lengthen = stub.EndLocationUse(rio_pb2.EndRecordRequest(code=first.use_id, end_date=d(2030, 7, 31)), metadata=b1)
    assert await refusal(lengthen) == (
        grpc.StatusCode.FAILED_PRECONDITION,
        "SBX-LOCATION-IN-USE",
        [("end_date", "SBX-LOCATION-IN-USE")],
    )
    assert [(u.board_code, u.use_id) for u in await uses_of(stub, admin, l1)] == [
        (B1, first.use_id),
        (B2, second.use_id),
    ]
    on_2024 = await stub.ListLocationUses(
        rio_pb2.ListLocationUsesRequest(location_code=l1, reference_date=d(2024, 1, 1)), metadata=admin
    )
    assert [u.use_id for u in on_2024.uses] == [second.use_id]

    # Board 1's offering there (until 2026) is offered while board 1 uses the location, not after.
    async def check(day: Date) -> rio_pb2.CheckOfferingResponse:
        return await stub.CheckOffering(
            rio_pb2.CheckOfferingRequest(
                institution_code="25BE", course_code="BAO", location_code=l1, reference_date=day
            ),
            metadata=admin,
        )

    assert (await check(d(2023, 7, 31))).offered
    after = await check(d(2023, 8, 1))
    assert not after.offered and after.reason_code == "SBX-LOCATION-NOT-IN-USE" and B2 in after.reason

    # Board 1 may no longer offer or change anything there from the handover on; board 2 may.
    new_offering = stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"], course_code="BAO", location_code=l1, begin_date=d(2026, 8, 1)
        ),
        metadata=b1,
    )
    assert await refusal(new_offering) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SBX-LOCATION-NOT-IN-USE",
        [("location_code", "SBX-LOCATION-NOT-IN-USE")],
    )
    rename = rio_pb2.UpdateLocationRequest(location_code=l1, effective_date=d(2024, 1, 1), name="Nieuwbouw")
    assert (await refusal(stub.UpdateLocation(rename, metadata=b1)))[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "AUT401",
    )
    renamed = await stub.UpdateLocation(rename, metadata=b2)
    assert renamed.name == "Nieuwbouw" and renamed.version == 2
    # A correction dated while board 1 still used it is board 1's to make, not board 2's.
    earlier = rio_pb2.UpdateLocationRequest(location_code=l1, effective_date=d(2022, 1, 1), name="X")
    assert (await refusal(stub.UpdateLocation(earlier, metadata=b2)))[:2] == (
        grpc.StatusCode.PERMISSION_DENIED,
        "AUT401",
    )

    # A board's locations are those it uses on the date.
    async def locations_of(board: str, day: Date) -> set[str]:
        answer = await stub.ListLocations(
            rio_pb2.ListLocationsRequest(board_code=board, reference_date=day), metadata=admin
        )
        return {loc.location_code for loc in answer.locations}

    assert l1 in await locations_of(B1, d(2022, 1, 1)) and l1 not in await locations_of(B1, d(2024, 2, 1))
    assert l1 in await locations_of(B2, d(2024, 2, 1)) and l1 not in await locations_of(B2, d(2022, 1, 1))

    # The change feed carries each use, its end included, with the use after the change.
    feed = [c for c in await all_changes(stub, admin) if c.record_kind == rio_pb2.RIO_RECORD_KIND_LOCATION_USE]
    kinds = [(c.change_kind, c.code, c.location_use.board_code) for c in feed if c.location_use.location_code == l1]
    assert kinds == [
        (rio_pb2.RIO_CHANGE_KIND_CREATED, first.use_id, B1),
        (rio_pb2.RIO_CHANGE_KIND_ENDED, first.use_id, B1),
        (rio_pb2.RIO_CHANGE_KIND_CREATED, second.use_id, B2),
    ]


async def test_a_use_needs_a_location_that_lives_through_it(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, admin = rio(sandbox), sandbox.metadata()
    unknown = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code="100X999", board_code=B2), metadata=admin
    )
    assert await refusal(unknown) == (grpc.StatusCode.NOT_FOUND, "A01060", [("location_code", "A01060")])
    await stub.EndLocation(rio_pb2.EndRecordRequest(code=codes["l2"], end_date=d(2030, 7, 31)), metadata=admin)
    [use] = await uses_of(stub, admin, codes["l2"])
    assert use.validity.end_date == d(2030, 7, 31)  # a use ends with its location
    before = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code=codes["l2"], board_code=B1, begin_date=d(2019, 1, 1)),
        metadata=admin,
    )
    assert await refusal(before) == (grpc.StatusCode.INVALID_ARGUMENT, "A01060", [("location_code", "A01060")])
    beyond = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code=codes["l2"], board_code=B1, begin_date=d(2030, 8, 1)),
        metadata=admin,
    )
    assert (await refusal(beyond))[1] == "A01060"
    someone_elses = stub.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(location_code=codes["l1"], board_code=B2, begin_date=d(2031, 1, 1)),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    assert await refusal(someone_elses) == (
        grpc.StatusCode.PERMISSION_DENIED,
        "AUT401",
        [("board_code", "AUT401")],
    )
    malformed = stub.CreateLocationUse(rio_pb2.CreateLocationUseRequest(location_code="L1"), metadata=admin)
    assert await refusal(malformed) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "SBX-MALFORMED",
        [("location_code", "SBX-MALFORMED")],
    )
    assert [u.use_id for u in await uses_of(stub, admin, codes["l2"])] == [use.use_id]  # nothing half-written


async def test_rod_refuses_an_enrolment_at_a_location_its_school_board_no_longer_uses(sandbox: SandboxHarness) -> None:
    rod = await rod_in(sandbox, dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC))
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    stub, admin = rio(sandbox), sandbox.metadata()
    school = rod.school(offering)
    approved = await school.register(offering, dt.date(2026, 8, 15), bsn=await rod.world.person(TEEN), key="olg-1")
    assert approved.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED

    [use] = await uses_of(stub, admin, offering.location_code)
    await stub.EndLocationUse(rio_pb2.EndRecordRequest(code=use.use_id, end_date=d(2027, 7, 31)), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await school.register(offering, dt.date(2027, 8, 15), bsn=await rod.world.person(TEEN), key="olg-2")
    reason, violations = read_details(refused.value)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason == "SBX-LOCATION-NOT-IN-USE" and [v.field for v in violations] == ["periods[0].location_code"]
