"""ROD as vendors know it, over real gRPC on SQLite and PostgreSQL: count dates, unknown schools, codes, key values."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest

from services._gen.registry.v1 import common_pb2, rod_pb2
from services.common import codes
from services.common.dates import to_proto_date
from services.common.errors import read_details, read_metadata
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import Rod, School, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)
CHILD = dt.date(2020, 5, 5)


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    return await rod_in(sandbox, TODAY)


async def _count(school: School, day: dt.date) -> rod_pb2.FundingCount:
    answer: rod_pb2.FundingCount = await school.rod.GetFundingCount(
        rod_pb2.GetFundingCountRequest(institution_code=school.institution_code, count_date=to_proto_date(day)),
        metadata=school.metadata,
    )
    return answer


async def test_a_funding_count_is_given_only_for_a_count_date_of_the_schools_sector(rod: Rod) -> None:
    primary = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(primary)
    await school.register(primary, START, bsn=await rod.world.person(CHILD))
    counted = await _count(school, dt.date(2028, 2, 1))
    assert counted.funded_pupils == 1 and counted.status == rod_pb2.FUNDING_STATUS_PROVISIONAL
    for not_a_count_date in (dt.date(2027, 10, 1), dt.date(2028, 2, 2)):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await _count(school, not_a_count_date)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert read_details(refused.value)[0] == "SBX-NOT-A-COUNT-DATE"
        assert read_metadata(refused.value) == {"teldatum": not_a_count_date.isoformat(), "sector": "PO"}
    # A secondary school RIO knows but ROD holds nothing of yet: its sector comes from RIO.
    secondary = rod.school(await rod.world.offering(common_pb2.SECTOR_VO))
    assert (await _count(secondary, dt.date(2027, 10, 1))).funded_pupils == 0
    with pytest.raises(grpc.aio.AioRpcError) as wrong_sector:
        await _count(secondary, dt.date(2028, 2, 1))
    assert read_details(wrong_sector.value)[0] == "SBX-NOT-A-COUNT-DATE"


async def test_a_well_formed_but_unknown_school_is_refused_not_left_silent(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    unknown = School(rod.channel, rod.sandbox_key, "99ZZ")
    with pytest.raises(grpc.aio.AioRpcError) as count:
        await _count(unknown, dt.date(2027, 10, 1))
    assert count.value.code() == grpc.StatusCode.NOT_FOUND
    assert read_details(count.value)[0] == "SBX-INSTITUTION-UNKNOWN"
    assert read_metadata(count.value) == {"instellingscode": "99ZZ"}
    stream = unknown.rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=unknown.metadata)
    with pytest.raises(grpc.aio.AioRpcError) as subscribed:
        await asyncio.wait_for(stream.read(), 10)
    assert subscribed.value.code() == grpc.StatusCode.NOT_FOUND
    admin = rod.admin_metadata
    by_admin = unknown.rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(institution_codes=["99ZZ"]), metadata=admin)
    with pytest.raises(grpc.aio.AioRpcError) as named:
        await asyncio.wait_for(by_admin.read(), 10)
    assert [v.field for v in read_details(named.value)[1]] == ["institution_codes[0]"]
    # A known school's stream is live at once: the response headers arrive before any feedback.
    known = rod.school(offering)
    live = known.rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=known.metadata)
    await asyncio.wait_for(live.initial_metadata(), 10)
    live.cancel()


async def test_a_refusal_names_the_key_values_it_is_about(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    wrong = period(offering, START)
    wrong.location_code = "999X999"
    request = rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        institution_code=school.institution_code,
        pupil=rod_pb2.PupilId(bsn=await rod.world.person(TEEN)),
        periods=[wrong],
        sequence=1,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await school.rod.RegisterEnrolment(request, metadata=school.metadata)
    reason, violations = read_details(refused.value)
    assert reason in codes.table() and [v.field for v in violations] == ["periods[0].location_code"]
    assert read_metadata(refused.value)["onderwijslocatiecode"] == "999X999"
    assert read_metadata(refused.value)["opleidingscode"] == offering.course_code


async def test_the_eerste_inschrijving_flag_belongs_to_ho_only(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    request = rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()),
        institution_code=school.institution_code,
        pupil=rod_pb2.PupilId(bsn=await rod.world.person(TEEN)),
        periods=[period(offering, START)],
        sequence=1,
        ho_first_enrolment=True,
    )
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await school.rod.RegisterEnrolment(request, metadata=school.metadata)
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert read_details(refused.value)[0] == "SBX-SECTOR-FIELD"


async def test_ho_double_first_enrolments_at_two_institutions_get_status_jk(rod: Rod) -> None:
    student = await rod.world.person(dt.date(2008, 3, 3))
    answers = []
    for _ in range(2):
        offering = await rod.world.offering(common_pb2.SECTOR_HO)
        school = rod.school(offering)
        request = rod_pb2.RegisterEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            institution_code=school.institution_code,
            pupil=rod_pb2.PupilId(bsn=student),
            periods=[period(offering, dt.date(2027, 9, 1))],
            sequence=1,
            ho_first_enrolment=True,
            ho_study_mode=rod_pb2.HO_STUDY_MODE_VOLTIJD,
        )
        answers.append((school, await school.rod.RegisterEnrolment(request, metadata=school.metadata)))
    for school, answer in answers:
        current = await school.rod.GetEnrolment(
            rod_pb2.GetEnrolmentRequest(enrolment_id=answer.enrolment.enrolment_id), metadata=school.metadata
        )
        assert current.ho_first_enrolment
        [decision] = current.funding
        assert (decision.funded, decision.status_code, list(decision.reason_codes)) == (
            False,
            "JK",
            ["SBX-FIRST-ENROLMENT-TWICE"],
        )


async def test_the_code_table_is_served(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    everything = await school.rod.ListCodes(rod_pb2.ListCodesRequest(), metadata=school.metadata)
    assert {c.code for c in everything.codes} == set(codes.table())
    statuses = await school.rod.ListCodes(rod_pb2.ListCodesRequest(kind="funding_status"), metadata=school.metadata)
    assert [(c.code, c.sandbox_own) for c in statuses.codes] == [("D", False), ("JK", False), ("V", False)]
    assert all(c.text_nl and c.text_en and c.action and c.source for c in everything.codes)
    # A mistyped filter is refused, not answered with an empty table the caller would take for "no such codes".
    for request, field in (
        (rod_pb2.ListCodesRequest(kind="notices"), "kind"),
        (rod_pb2.ListCodesRequest(register="DUO"), "register"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await school.rod.ListCodes(request, metadata=school.metadata)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        reason, violations = read_details(refused.value)
        assert (reason, [v.field for v in violations]) == ("SBX-INVALID-ENUM", [field])
