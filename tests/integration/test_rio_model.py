"""RIO's object model over real gRPC on SQLite and PostgreSQL: course unit codes beside the national code."""

from __future__ import annotations

import dataclasses
import datetime as dt

import grpc

from services._gen.registry.v1 import common_pb2, rio_pb2, rod_pb2, sandbox_pb2, sandbox_pb2_grpc
from tests.conftest import SandboxHarness
from tests.helpers.rio import B1, d, refusal, register, rio
from tests.helpers.rod_world import rod_in

TEEN = dt.date(2014, 5, 5)


async def test_a_course_gets_a_unit_code_and_is_found_by_either_code(sandbox: SandboxHarness) -> None:
    codes = await register(sandbox)
    stub, admin = rio(sandbox), sandbox.metadata()
    bao = await stub.GetCourse(rio_pb2.GetRecordRequest(code="BAO", reference_date=d(2021, 1, 1)), metadata=admin)
    assert bao.course_code == "BAO" and bao.unit_code == "1000O0001"
    by_unit = await stub.GetCourse(
        rio_pb2.GetRecordRequest(code=bao.unit_code, reference_date=d(2021, 1, 1)), metadata=admin
    )
    assert by_unit == bao

    # The next course gets the next free unit code; a given one is kept, and taken only once.
    ilt = await stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="0062",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT,
            name="Havo",
            level="VO-HAVO",
            begin_date=d(2000, 8, 1),
        ),
        metadata=admin,
    )
    assert ilt.unit_code == "1000O0002"
    chosen = await stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="0063",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT,
            name="Vwo",
            level="VO-VWO",
            begin_date=d(2000, 8, 1),
            unit_code="1234O5678",
        ),
        metadata=admin,
    )
    assert chosen.unit_code == "1234O5678"
    taken = stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="0064",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT,
            name="Vmbo",
            level="VO-VMBO-TL",
            unit_code="1234O5678",
        ),
        metadata=admin,
    )
    assert await refusal(taken) == (
        grpc.StatusCode.ALREADY_EXISTS,
        "SBX-RECORD-EXISTS",
        [("unit_code", "SBX-RECORD-EXISTS")],
    )
    malformed = stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="0065", code_system=rio_pb2.COURSE_CODE_SYSTEM_ILT, name="X", level="VO-VWO", unit_code="12O3"
        ),
        metadata=admin,
    )
    code, _, fields = await refusal(malformed)
    assert code == grpc.StatusCode.INVALID_ARGUMENT and fields == [("unit_code", "SBX-MALFORMED")]

    # CheckOffering accepts either code and answers with both; an offering made by unit code records the national one.
    for course in ("BAO", bao.unit_code):
        check = await stub.CheckOffering(
            rio_pb2.CheckOfferingRequest(
                institution_code="25BE", course_code=course, location_code=codes["l1"], reference_date=d(2021, 1, 1)
            ),
            metadata=admin,
        )
        assert check.offered and check.offering.offering_id == codes["offering"], course
        assert (check.course.course_code, check.course.unit_code) == ("BAO", bao.unit_code)
    unknown = await stub.CheckOffering(
        rio_pb2.CheckOfferingRequest(
            institution_code="25BE", course_code="9999O9999", location_code=codes["l1"], reference_date=d(2021, 1, 1)
        ),
        metadata=admin,
    )
    assert not unknown.offered and unknown.reason_code == "A01070"
    later = await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"],
            course_code=bao.unit_code,
            location_code=codes["l1"],
            begin_date=d(2026, 8, 1),
        ),
        metadata=sandbox.metadata(x_board_code=B1),
    )
    assert later.course_code == "BAO"
    listed = await stub.ListCourseOfferings(
        rio_pb2.ListCourseOfferingsRequest(course_code=bao.unit_code, reference_date=d(2027, 1, 1)), metadata=admin
    )
    assert [o.offering_id for o in listed.offerings] == [later.offering_id]


async def test_a_seeded_catalogue_has_distinct_unit_codes(sandbox: SandboxHarness) -> None:
    stub, admin = rio(sandbox), sandbox.metadata()
    await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL), metadata=admin
    )
    courses = await stub.ListCourses(
        rio_pb2.ListCoursesRequest(reference_date=d(2024, 1, 1), page=common_pb2.PageRequest(page_size=500)),
        metadata=admin,
    )
    units = [c.unit_code for c in courses.courses]
    assert units and len(set(units)) == len(units) and all(len(u) == 9 and u[4] == "O" for u in units)


async def test_rod_accepts_a_period_naming_the_course_unit(sandbox: SandboxHarness) -> None:
    rod = await rod_in(sandbox, dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC))
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    course = await rio(sandbox).GetCourse(
        rio_pb2.GetRecordRequest(code=offering.course_code), metadata=sandbox.metadata()
    )
    by_unit = dataclasses.replace(offering, course_code=course.unit_code)
    bsn = await rod.world.person(TEEN)
    answer = await rod.school(by_unit).register(by_unit, dt.date(2027, 8, 15), bsn=bsn, key="unit-1")
    assert answer.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED
    [period] = answer.enrolment.periods
    assert period.course_code == course.unit_code


async def test_an_offering_without_a_location_is_offered_at_every_location_of_the_board(
    sandbox: SandboxHarness,
) -> None:
    codes = await register(sandbox)
    stub, admin, board = rio(sandbox), sandbox.metadata(), sandbox.metadata(x_board_code=B1)
    address = common_pb2.Address(street="Kerkweg", house_number=2, postcode="1234AC", city="Amstelveen")
    second = await stub.CreateLocation(
        rio_pb2.CreateLocationRequest(name="Dependance", address=address, begin_date=d(2022, 8, 1)), metadata=board
    )
    await stub.CreateCourse(
        rio_pb2.CreateCourseRequest(
            course_code="SBAO",
            code_system=rio_pb2.COURSE_CODE_SYSTEM_PO,
            name="Speciaal basisonderwijs",
            level="PO-BAO",
            begin_date=d(2000, 8, 1),
        ),
        metadata=admin,
    )
    anywhere = await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"], course_code="SBAO", begin_date=d(2021, 8, 1)
        ),
        metadata=board,
    )
    assert anywhere.location_code == ""

    async def check(location: str, day: object) -> rio_pb2.CheckOfferingResponse:
        request = rio_pb2.CheckOfferingRequest(
            institution_code="25BE", course_code="SBAO", location_code=location, reference_date=day
        )
        return await stub.CheckOffering(request, metadata=admin)

    for location in (codes["l1"], second.location_code):
        answer = await check(location, d(2023, 1, 1))
        assert answer.offered and answer.offering.offering_id == anywhere.offering_id, location
    # Not before the second location is in use, not at another board's location, not before the offering began.
    assert (await check(second.location_code, d(2022, 7, 31))).reason_code == "A01060"
    assert (await check(codes["l2"], d(2023, 1, 1))).reason_code == "SBX-LOCATION-NOT-IN-USE"
    assert (await check(codes["l1"], d(2021, 7, 31))).reason_code == "SBX-NOT-OFFERED"

    # An offering at the very location is preferred over the location-free one.
    here = await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"],
            course_code="SBAO",
            location_code=second.location_code,
            begin_date=d(2023, 8, 1),
        ),
        metadata=board,
    )
    assert (await check(second.location_code, d(2024, 1, 1))).offering.offering_id == here.offering_id
    assert (await check(codes["l1"], d(2024, 1, 1))).offering.offering_id == anywhere.offering_id


async def test_a_provider_with_a_location_free_offering_uses_every_location_of_its_board(
    sandbox: SandboxHarness,
) -> None:
    codes = await register(sandbox)
    stub, board = rio(sandbox), sandbox.metadata(x_board_code=B1)
    address = common_pb2.Address(street="Kerkweg", house_number=2, postcode="1234AC", city="Amstelveen")
    second = await stub.CreateLocation(
        rio_pb2.CreateLocationRequest(name="Dependance", address=address, begin_date=d(2022, 8, 1)), metadata=board
    )

    async def sites(day: object) -> list[str]:
        request = rio_pb2.ListLocationsRequest(provider_code=codes["provider"], reference_date=day)
        return sorted(loc.location_code for loc in (await stub.ListLocations(request, metadata=board)).locations)

    assert await sites(d(2023, 1, 1)) == [codes["l1"]]
    await stub.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=codes["provider"], course_code="BAO", begin_date=d(2026, 8, 1)
        ),
        metadata=board,
    )
    assert await sites(d(2027, 1, 1)) == sorted([codes["l1"], second.location_code])
