"""Sector-specific enrolment data over real gRPC, on SQLite and PostgreSQL: what each sector must and may send.

Mbo leerweg and intensity, ho mode of study, the reason an enrolment ended, a po or vo school's vestiging,
and a configured correction deadline (prikdatum).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import grpc
import pytest

from services._gen.registry.v1 import common_pb2, rio_pb2, rod_pb2
from services.common.dates import to_proto_date
from services.common.errors import read_details, read_metadata
from services.common.settings import get_settings
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import Offering, Rod, School, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 20)
STUDENT = dt.date(2008, 3, 3)
CHILD = dt.date(2020, 5, 5)


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    return await rod_in(sandbox, TODAY)


def _register(school: School, offering: Offering, bsn: str, **fields: object) -> rod_pb2.RegisterEnrolmentRequest:
    return rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        institution_code=school.institution_code,
        pupil=rod_pb2.PupilId(bsn=bsn),
        periods=[period(offering, START)],
        sequence=1,
        **fields,  # type: ignore[arg-type]
    )


async def _refused(call: object) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION, refused.value.details()
    return refused.value


async def test_mbo_needs_its_leerweg_and_intensity_and_gets_them_back(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_MBO)
    school = rod.school(offering)
    student = await rod.world.person(STUDENT)
    missing = await _refused(
        school.rod.RegisterEnrolment(
            _register(school, offering, student, mbo_leerweg=rod_pb2.MBO_LEERWEG_BBL), metadata=school.metadata
        )
    )
    reason, violations = read_details(missing)
    assert reason == "SBX-SECTOR-FIELD"
    assert [(v.field, v.reason) for v in violations] == [("mbo_intensity", "SBX-SECTOR-FIELD")]
    assert read_metadata(missing) == {"sector": "MBO"}
    answer = await school.rod.RegisterEnrolment(
        _register(
            school,
            offering,
            student,
            mbo_leerweg=rod_pb2.MBO_LEERWEG_BBL,
            mbo_intensity=rod_pb2.MBO_INTENSITY_DEELTIJD,
        ),
        metadata=school.metadata,
    )
    current = await school.rod.GetEnrolment(
        rod_pb2.GetEnrolmentRequest(enrolment_id=answer.enrolment.enrolment_id), metadata=school.metadata
    )
    assert (current.mbo_leerweg, current.mbo_intensity, current.ho_study_mode) == (
        rod_pb2.MBO_LEERWEG_BBL,
        rod_pb2.MBO_INTENSITY_DEELTIJD,
        rod_pb2.HO_STUDY_MODE_UNSPECIFIED,
    )
    # A change is a full state: the leerweg may change (BBL to BOL), but not go missing.
    change = rod_pb2.ChangeEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        enrolment_id=answer.enrolment.enrolment_id,
        periods=[period(offering, START)],
        sequence=2,
        mbo_intensity=rod_pb2.MBO_INTENSITY_VOLTIJD,
    )
    dropped = await _refused(school.rod.ChangeEnrolment(change, metadata=school.metadata))
    assert [v.field for v in read_details(dropped)[1]] == ["mbo_leerweg"]
    change.document_id, change.mbo_leerweg = str(uuid.uuid4()), rod_pb2.MBO_LEERWEG_BOL
    changed = await school.rod.ChangeEnrolment(change, metadata=school.metadata)
    assert (changed.enrolment.mbo_leerweg, changed.enrolment.mbo_intensity) == (
        rod_pb2.MBO_LEERWEG_BOL,
        rod_pb2.MBO_INTENSITY_VOLTIJD,
    )


async def test_ho_needs_its_mode_of_study_and_other_sectors_send_none_of_these(rod: Rod) -> None:
    higher = await rod.world.offering(common_pb2.SECTOR_HO)
    university = rod.school(higher)
    student = await rod.world.person(STUDENT)
    refused = await _refused(
        university.rod.RegisterEnrolment(
            _register(university, higher, student, mbo_leerweg=rod_pb2.MBO_LEERWEG_BOL), metadata=university.metadata
        )
    )
    assert {(v.field, v.reason) for v in read_details(refused)[1]} == {
        ("mbo_leerweg", "SBX-SECTOR-FIELD"),
        ("ho_study_mode", "SBX-SECTOR-FIELD"),
    }
    assert read_metadata(refused) == {"sector": "HO", "leerweg": "BOL"}
    answer = await university.rod.RegisterEnrolment(
        _register(university, higher, student, ho_study_mode=rod_pb2.HO_STUDY_MODE_DUAAL), metadata=university.metadata
    )
    assert answer.enrolment.ho_study_mode == rod_pb2.HO_STUDY_MODE_DUAAL
    # Po and vo send none of the sector fields: existing po/vo clients keep working unchanged.
    primary = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(primary)
    child = await rod.world.person(CHILD)
    wrong = await _refused(
        school.rod.RegisterEnrolment(
            _register(school, primary, child, ho_study_mode=rod_pb2.HO_STUDY_MODE_VOLTIJD), metadata=school.metadata
        )
    )
    assert read_metadata(wrong) == {"sector": "PO", "opleidingsvorm": "VOLTIJD"}
    plain = await school.rod.RegisterEnrolment(_register(school, primary, child), metadata=school.metadata)
    assert plain.enrolment.mbo_leerweg == rod_pb2.MBO_LEERWEG_UNSPECIFIED


async def test_an_ended_enrolment_carries_the_reason_of_its_sector(rod: Rod) -> None:
    vocational = await rod.world.offering(common_pb2.SECTOR_MBO)
    college = rod.school(vocational)
    registered = await college.register(vocational, START, bsn=await rod.world.person(STUDENT))
    enrolment_id = registered.enrolment.enrolment_id

    def end(reason: str, sequence: int = 2) -> rod_pb2.EndEnrolmentRequest:
        return rod_pb2.EndEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            enrolment_id=enrolment_id,
            end_date=to_proto_date(dt.date(2028, 1, 31)),
            sequence=sequence,
            end_reason_code=reason,
        )

    for reason in ("", "09", "SBX-UIT-OVERSTAP"):
        refused = await _refused(college.rod.EndEnrolment(end(reason), metadata=college.metadata))
        assert read_details(refused)[0] == "SBX-END-REASON"
        assert read_metadata(refused) == {"reden_uitschrijving": reason, "sector": "MBO"}
    ended = await college.rod.EndEnrolment(end("04"), metadata=college.metadata)
    assert (ended.enrolment.status, ended.enrolment.end_reason_code) == (rod_pb2.ENROLMENT_STATUS_ENDED, "04")
    # Reopened by a new state without an end date: the reason it ended for no longer holds.
    reopened = await college.rod.ChangeEnrolment(
        rod_pb2.ChangeEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            enrolment_id=enrolment_id,
            periods=[period(vocational, START)],
            sequence=3,
            mbo_leerweg=rod_pb2.MBO_LEERWEG_BOL,
            mbo_intensity=rod_pb2.MBO_INTENSITY_VOLTIJD,
        ),
        metadata=college.metadata,
    )
    assert (reopened.enrolment.status, reopened.enrolment.end_reason_code) == (rod_pb2.ENROLMENT_STATUS_ACTIVE, "")

    # Po: a reason is optional, and when given one of the sandbox's own; DUO's mbo codes are refused.
    primary = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(primary)
    child = await school.register(primary, START, bsn=await rod.world.person(CHILD))
    enrolment_id = child.enrolment.enrolment_id
    refused = await _refused(school.rod.EndEnrolment(end("01"), metadata=school.metadata))
    assert read_details(refused)[0] == "SBX-END-REASON"
    ended = await school.rod.EndEnrolment(end("SBX-UIT-OVERSTAP"), metadata=school.metadata)
    assert ended.enrolment.end_reason_code == "SBX-UIT-OVERSTAP"


async def _second_location(rod: Rod, offering: Offering) -> str:
    """Gives the offering's school a second location where it teaches the same course."""
    location = await rod.world.rio.CreateLocation(
        rio_pb2.CreateLocationRequest(
            board_code=(
                await rod.world.rio.GetProvider(
                    rio_pb2.GetRecordRequest(code=offering.provider_code), metadata=rod.world.metadata
                )
            ).board_code,
            name="Dependance",
            address=common_pb2.Address(
                street="Schoolstraat",
                house_number=2,
                postcode="1012AB",
                city="Amsterdam",
                municipality_code="0363",
                country_code="NL",
            ),
            begin_date=to_proto_date(dt.date(2020, 1, 1)),
        ),
        metadata=rod.world.metadata,
    )
    await rod.world.rio.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=offering.provider_code,
            course_code=offering.course_code,
            location_code=location.location_code,
            begin_date=to_proto_date(dt.date(2020, 1, 1)),
        ),
        metadata=rod.world.metadata,
    )
    return location.location_code


async def test_a_po_school_names_its_vestiging_only_when_it_has_several(rod: Rod) -> None:
    primary = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(primary)
    unlocated = Offering(primary.institution_code, "", primary.course_code, sector=common_pb2.SECTOR_PO)
    one = await school.register(unlocated, START, bsn=await rod.world.person(CHILD))
    assert [p.location_code for p in one.enrolment.periods] == [primary.location_code]
    second = await _second_location(rod, primary)
    refused = await _refused(
        school.rod.RegisterEnrolment(
            _register(school, unlocated, await rod.world.person(CHILD)), metadata=school.metadata
        )
    )
    reason, violations = read_details(refused)
    assert (reason, [v.field for v in violations]) == ("SBX-VESTIGING-REQUIRED", ["periods[0].location_code"])
    assert read_metadata(refused) == {
        "begindatum": START.isoformat(),
        "onderwijslocatiecodes": ",".join(sorted([primary.location_code, second])),
    }
    named = Offering(primary.institution_code, second, primary.course_code, sector=common_pb2.SECTOR_PO)
    there = await school.register(named, START, bsn=await rod.world.person(CHILD))
    assert [p.location_code for p in there.enrolment.periods] == [second]
    # Mbo names its location always (DUO: the onderwijslocatie where the student is taught most).
    vocational = await rod.world.offering(common_pb2.SECTOR_MBO)
    college = rod.school(vocational)
    nowhere = Offering(vocational.institution_code, "", vocational.course_code, sector=common_pb2.SECTOR_MBO)
    refused = await _refused(
        college.rod.RegisterEnrolment(
            _register(
                college,
                nowhere,
                await rod.world.person(STUDENT),
                mbo_leerweg=rod_pb2.MBO_LEERWEG_BOL,
                mbo_intensity=rod_pb2.MBO_INTENSITY_VOLTIJD,
            ),
            metadata=college.metadata,
        )
    )
    assert [(v.field, v.reason) for v in read_details(refused)[1]] == [("periods[0].location_code", "SBX-SECTOR-FIELD")]


@pytest.fixture
def prikdatum(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """VO's 1 October 2027 count stays open until 15 October only (DUO's default: 28 October)."""
    monkeypatch.setenv("REGISTRY_ROD_CORRECTION_DEADLINES", "VO:2027-10-01=2027-10-15")
    get_settings.cache_clear()
    yield
    monkeypatch.delenv("REGISTRY_ROD_CORRECTION_DEADLINES")
    get_settings.cache_clear()


@pytest.mark.usefixtures("prikdatum")
async def test_a_configured_prikdatum_decides_when_the_count_turns_final(rod: Rod) -> None:
    secondary = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(secondary)
    await school.register(secondary, START, bsn=await rod.world.person(dt.date(2014, 5, 5)))
    count = rod_pb2.GetFundingCountRequest(
        institution_code=school.institution_code, count_date=to_proto_date(dt.date(2027, 10, 1))
    )
    await rod.set_clock(dt.datetime(2027, 10, 15, 12, 0, tzinfo=dt.UTC))
    assert (await school.rod.GetFundingCount(count, metadata=school.metadata)).status == (
        rod_pb2.FUNDING_STATUS_PROVISIONAL
    )
    await rod.set_clock(dt.datetime(2027, 10, 16, 12, 0, tzinfo=dt.UTC))
    final = await school.rod.GetFundingCount(count, metadata=school.metadata)
    assert (final.status, final.funded_pupils) == (rod_pb2.FUNDING_STATUS_FINAL, 1)
