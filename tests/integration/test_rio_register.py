"""RIO over real gRPC on SQLite and PostgreSQL: history as of a peildatum, refusals, board scope, idempotency."""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from google.type.date_pb2 import Date

from services._gen.registry.v1 import common_pb2, rio_pb2, sandbox_pb2, sandbox_pb2_grpc
from tests.conftest import SandboxHarness
from tests.helpers.rio import B1, B2, d, refusal, register, rio


async def test_records_get_codes_board_ownership_and_a_normalised_address(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    assert codes["provider"] == "100A001" and codes["l1"] == "100X001" and codes["l2"] == "100X002"
    location = await rio(sandbox).GetLocation(
        rio_pb2.GetRecordRequest(code=codes["l1"], reference_date=d(2021, 1, 1)), metadata=sandbox.metadata()
    )
    assert location.board_code == B1 and location.address.postcode == "1234AB"
    assert location.address.country_code == "NL" and location.version == 1


async def test_history_answers_as_of_past_present_and_future_dates(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata(x_board_code=B1)
    renamed = await stub.UpdateProvider(
        rio_pb2.UpdateProviderRequest(
            provider_code=codes["provider"], effective_date=d(2024, 8, 1), name="IKC De Regenboog"
        ),
        metadata=md,
    )
    assert renamed.version == 2 and renamed.validity.begin_date == d(2024, 8, 1)
    await stub.EndProvider(rio_pb2.EndRecordRequest(code=codes["provider"], end_date=d(2030, 7, 31)), metadata=md)

    async def name_on(day: object) -> str:
        request = rio_pb2.GetRecordRequest(code=codes["provider"], reference_date=day)
        return (await stub.GetProvider(request, metadata=md)).name

    assert await name_on(d(2020, 8, 1)) == "OBS De Regenboog"
    assert await name_on(d(2024, 7, 31)) == "OBS De Regenboog"
    assert await name_on(d(2024, 8, 1)) == "IKC De Regenboog"
    assert await name_on(d(2030, 7, 31)) == "IKC De Regenboog"
    for outside in (d(2020, 7, 31), d(2030, 8, 1)):
        code, _, fields = await refusal(name_on(outside))
        assert code == grpc.StatusCode.NOT_FOUND and fields == [("code", "SBX-NOT-FOUND")]

    # The first version keeps its own period: history is not overwritten.
    old = await stub.GetProvider(
        rio_pb2.GetRecordRequest(code=codes["provider"], reference_date=d(2021, 1, 1)), metadata=md
    )
    assert old.version == 1 and old.validity.end_date == d(2024, 7, 31)

    listed = await stub.ListProviders(rio_pb2.ListProvidersRequest(reference_date=d(2031, 1, 1)), metadata=md)
    assert list(listed.providers) == []


async def test_reference_date_defaults_to_the_sandbox_clock(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    stub, md = rio(sandbox), sandbox.metadata()
    await stub.UpdateProvider(
        rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], effective_date=d(2024, 8, 1), name="Nieuw"),
        metadata=md,
    )
    for year, expected in ((2022, "OBS De Regenboog"), (2025, "Nieuw")):
        moment = Timestamp()
        moment.FromDatetime(dt.datetime(year, 3, 1, 12, tzinfo=dt.UTC))
        await admin.SetClock(sandbox_pb2.SetClockRequest(freeze_at=moment), metadata=md)
        provider = await stub.GetProvider(rio_pb2.GetRecordRequest(code=codes["provider"]), metadata=md)
        assert provider.name == expected


async def test_check_offering_answers_exactly_for_any_date(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata()

    async def check(
        day: object, location: str | None = None, course: str = "BAO", brin: str = "25BE"
    ) -> rio_pb2.CheckOfferingResponse:
        request = rio_pb2.CheckOfferingRequest(
            institution_code=brin, course_code=course, location_code=location or codes["l1"], reference_date=day
        )
        return await stub.CheckOffering(request, metadata=md)

    first, last = await check(d(2020, 8, 1)), await check(d(2026, 7, 31))
    assert first.offered and last.offered and first.offering.offering_id == codes["offering"]
    assert first.provider.institution_code == "25BE" and first.course.level == "PO-BAO"
    after = await check(d(2026, 8, 1))
    assert not after.offered and after.reason_code == "A01080" and after.provider.provider_code == codes["provider"]
    before = await check(d(2020, 7, 31))  # nothing existed yet; the location is checked first
    assert not before.offered and before.reason_code == "A01060"
    assert (await check(d(2021, 1, 1), course="25001")).reason_code == "A01070"
    assert (await check(d(2021, 1, 1), location="100X999")).reason_code == "A01060"
    assert (await check(d(2021, 1, 1), location=codes["l2"])).reason_code == "A01080"
    assert (await check(d(2021, 1, 1), brin="99ZZ")).reason_code == "A01080"

    # Ending the offering earlier changes the answer from that day on, and only from then.
    await stub.EndCourseOffering(rio_pb2.EndRecordRequest(code=codes["offering"], end_date=d(2023, 7, 31)), metadata=md)
    assert (await check(d(2023, 7, 31))).offered
    assert not (await check(d(2023, 8, 1))).offered

    code, _, fields = await refusal(check(d(2021, 1, 1), brin="25be"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == [("institution_code", "INVALID_CODE")]


async def test_every_refusal_is_typed_and_names_its_field(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, b1, admin = rio(sandbox), sandbox.metadata(x_board_code=B1), sandbox.metadata()

    def offering(**overrides: object) -> rio_pb2.CreateCourseOfferingRequest:
        fields: dict[str, object] = {
            "provider_code": codes["provider"],
            "course_code": "BAO",
            "location_code": codes["l1"],
            "begin_date": d(2027, 8, 1),
        }
        fields.update(overrides)
        return rio_pb2.CreateCourseOfferingRequest(**fields)  # type: ignore[arg-type]

    cases = [
        (
            stub.CreateCourseOffering(offering(location_code="100X999"), metadata=b1),
            "A01060",
            [("location_code", "A01060")],
        ),
        (stub.CreateCourseOffering(offering(course_code="25001"), metadata=b1), "A01070", [("course_code", "A01070")]),
        (
            stub.CreateCourseOffering(offering(location_code=codes["l2"]), metadata=b1),
            "A01080",
            [("location_code", "A01080")],
        ),
        (
            stub.CreateCourseOffering(offering(begin_date=d(2025, 1, 1)), metadata=b1),
            "PERIOD_OVERLAP",
            [("begin_date", "PERIOD_OVERLAP")],
        ),
        (
            stub.CreateCourseOffering(offering(end_date=d(2027, 7, 31)), metadata=b1),
            "END_BEFORE_BEGIN",
            [("end_date", "END_BEFORE_BEGIN")],
        ),
        (
            stub.CreateProvider(
                rio_pb2.CreateProviderRequest(
                    institution_code="25BE", name="Dubbel", sector=common_pb2.SECTOR_PO, begin_date=d(2025, 1, 1)
                ),
                metadata=b1,
            ),
            "PERIOD_OVERLAP",
            [("institution_code", "PERIOD_OVERLAP")],
        ),
        (
            stub.UpdateProvider(
                rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], effective_date=d(2020, 8, 1), name="X"),
                metadata=b1,
            ),
            "PERIOD_OVERLAP",
            [("effective_date", "PERIOD_OVERLAP")],
        ),
        (
            stub.EndLocation(rio_pb2.EndRecordRequest(code=codes["l1"], end_date=d(2019, 1, 1)), metadata=b1),
            "END_BEFORE_BEGIN",
            [("end_date", "END_BEFORE_BEGIN")],
        ),
        (
            stub.CreateProvider(
                rio_pb2.CreateProviderRequest(name="X", sector=common_pb2.SECTOR_PO, provider_code="12345"), metadata=b1
            ),
            "INVALID_CODE",
            [("provider_code", "INVALID_CODE")],
        ),
        (
            stub.CreateLocation(
                rio_pb2.CreateLocationRequest(name="X", begin_date=Date(year=2030, month=2, day=30)), metadata=b1
            ),
            "INVALID_DATE",
            [("begin_date", "INVALID_DATE")],
        ),
        (
            stub.CreateCourse(
                rio_pb2.CreateCourseRequest(
                    course_code="2500", code_system=rio_pb2.COURSE_CODE_SYSTEM_CREBO, name="X", level="MBO-2"
                ),
                metadata=admin,
            ),
            "INVALID_CODE",
            [("course_code", "INVALID_CODE")],
        ),
    ]
    for call, expected_reason, expected_fields in cases:
        code, reason, fields = await refusal(call)
        assert code in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION), expected_reason
        assert (reason, fields) == (expected_reason, expected_fields)

    # Nothing refused left a trace: still exactly one offering, one provider.
    offerings = await stub.ListCourseOfferings(
        rio_pb2.ListCourseOfferingsRequest(reference_date=d(2028, 1, 1)), metadata=admin
    )
    assert len(offerings.offerings) == 0
    providers = await stub.ListProviders(rio_pb2.ListProvidersRequest(reference_date=d(2025, 1, 1)), metadata=admin)
    assert [p.institution_code for p in providers.providers] == ["25BE"]


async def test_a_board_changes_only_its_own_records(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, b2 = rio(sandbox), sandbox.metadata(x_board_code=B2)
    attempts = [
        stub.UpdateProvider(
            rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], name="Overname"), metadata=b2
        ),
        stub.EndProvider(rio_pb2.EndRecordRequest(code=codes["provider"]), metadata=b2),
        stub.EndLocation(rio_pb2.EndRecordRequest(code=codes["l1"]), metadata=b2),
        stub.EndCourseOffering(rio_pb2.EndRecordRequest(code=codes["offering"]), metadata=b2),
        stub.CreateCourseOffering(
            rio_pb2.CreateCourseOfferingRequest(
                provider_code=codes["provider"], course_code="BAO", location_code=codes["l1"], begin_date=d(2027, 8, 1)
            ),
            metadata=b2,
        ),
        stub.CreateProvider(
            rio_pb2.CreateProviderRequest(board_code=B1, name="X", sector=common_pb2.SECTOR_PO), metadata=b2
        ),
        stub.CreateCourse(
            rio_pb2.CreateCourseRequest(
                course_code="25001", code_system=rio_pb2.COURSE_CODE_SYSTEM_CREBO, name="Kok", level="MBO-2"
            ),
            metadata=b2,
        ),
        stub.CreateBoard(rio_pb2.CreateBoardRequest(name="Eigen bestuur"), metadata=b2),
    ]
    for attempt in attempts:
        code, reason, fields = await refusal(attempt)
        assert code == grpc.StatusCode.PERMISSION_DENIED and reason == "AUT401" and len(fields) == 1

    # The owner and the sandbox admin may.
    ended = await stub.EndCourseOffering(
        rio_pb2.EndRecordRequest(code=codes["offering"], end_date=d(2025, 7, 31)),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    assert ended.validity.end_date == d(2025, 7, 31)
    renamed = await stub.UpdateProvider(
        rio_pb2.UpdateProviderRequest(provider_code=codes["provider"], effective_date=d(2025, 1, 1), name="Admin"),
        metadata=sandbox.metadata(),
    )
    assert renamed.name == "Admin" and renamed.board_code == B1


async def test_mutations_are_idempotent_under_their_key(sandbox: SandboxHarness) -> None:
    await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata(x_board_code=B1)
    request = rio_pb2.CreateProviderRequest(
        idempotency_key="school-2", name="CBS De Ark", sector=common_pb2.SECTOR_PO, begin_date=d(2021, 8, 1)
    )
    first = await stub.CreateProvider(request, metadata=md)
    before = await stub.ListChanges(rio_pb2.ListChangesRequest(), metadata=md)
    second = await stub.CreateProvider(request, metadata=md)
    after = await stub.ListChanges(rio_pb2.ListChangesRequest(), metadata=md)
    assert first == second and first.institution_code == "00AA"
    assert len(after.changes) == len(before.changes)
    request.name = "Andere school"
    code, _, fields = await refusal(stub.CreateProvider(request, metadata=md))
    assert code == grpc.StatusCode.ALREADY_EXISTS and fields == [("idempotency_key", "SBX-IDEMPOTENCY-KEY-REUSED")]


async def test_a_vendor_sees_only_its_own_sandbox(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    other = await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).CreateSandbox(
        sandbox_pb2.CreateSandboxRequest(name="b")
    )
    theirs = (("x-sandbox-key", other.sandbox_key),)
    stub = rio(sandbox)
    code, _, _ = await refusal(stub.GetProvider(rio_pb2.GetRecordRequest(code=codes["provider"]), metadata=theirs))
    assert code == grpc.StatusCode.NOT_FOUND
    assert not (await stub.ListChanges(rio_pb2.ListChangesRequest(), metadata=theirs)).changes
    # The same codes can be used in another sandbox.
    board = await stub.CreateBoard(rio_pb2.CreateBoardRequest(board_code=B1, name="Ander"), metadata=theirs)
    assert board.board_code == B1


async def test_concurrent_creates_get_distinct_codes_and_lose_nothing(sandbox: SandboxHarness) -> None:
    await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata(x_board_code=B1)
    created = await asyncio.gather(
        *(
            stub.CreateProvider(
                rio_pb2.CreateProviderRequest(
                    name=f"School {n}", sector=common_pb2.SECTOR_PO, begin_date=d(2021, 8, 1)
                ),
                metadata=md,
            )
            for n in range(12)
        )
    )
    assert len({p.provider_code for p in created}) == 12
    assert len({p.institution_code for p in created}) == 12
    listed = await stub.ListProviders(rio_pb2.ListProvidersRequest(reference_date=d(2022, 1, 1)), metadata=md)
    assert len(listed.providers) == 13


async def test_a_providers_locations_are_those_it_teaches_at_on_the_date(sandbox: SandboxHarness) -> None:
    """ListLocations by provider_code: the sites (vestigingen) where the school has an offering on the date."""
    codes = await register(sandbox)
    stub, md = rio(sandbox), sandbox.metadata(x_board_code=B1)
    address = common_pb2.Address(street="Kerkweg", house_number=7, postcode="1234 AC", city="Amstelveen")
    annex = await stub.CreateLocation(
        rio_pb2.CreateLocationRequest(name="Dependance", address=address, begin_date=d(2022, 8, 1)), metadata=md
    )
    await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"],
            course_code="BAO",
            location_code=annex.location_code,
            begin_date=d(2024, 8, 1),
        ),
        metadata=md,
    )

    async def sites(day: Date, provider: str = codes["provider"]) -> list[str]:
        request = rio_pb2.ListLocationsRequest(provider_code=provider, reference_date=day)
        return sorted(loc.location_code for loc in (await stub.ListLocations(request, metadata=md)).locations)

    # The annex exists from 2022 but the school teaches there only from 1 August 2024; the main site's
    # offering ends on 31 July 2026. Board 2's location is never the school's.
    assert await sites(d(2024, 7, 31)) == [codes["l1"]]
    assert await sites(d(2024, 8, 1)) == sorted([codes["l1"], annex.location_code])
    assert await sites(d(2026, 8, 1)) == [annex.location_code]
    assert await sites(d(2024, 8, 1), provider="999A999") == []
    every = await stub.ListLocations(rio_pb2.ListLocationsRequest(reference_date=d(2024, 8, 1)), metadata=md)
    assert codes["l2"] in {loc.location_code for loc in every.locations}
    code, _, fields = await refusal(stub.ListLocations(rio_pb2.ListLocationsRequest(provider_code="25BE"), metadata=md))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and [f for f, _ in fields] == ["provider_code"]
