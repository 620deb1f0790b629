"""ROD over real gRPC on SQLite and PostgreSQL: enrolments, typed refusals, feedback push, re-evaluation, counts."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest

from services._gen.registry.v1 import common_pb2, rio_pb2, rod_pb2, sandbox_pb2, sandbox_pb2_grpc
from services.bootstrap import ALL_SERVICES, RunningSandbox, build
from services.common.dates import to_proto_date
from services.common.errors import read_details
from services.common.settings import Settings
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import FeedbackCollector, Offering, RealWorld, Rod, School, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
COUNT = dt.date(2027, 10, 1)
TEEN = dt.date(2014, 5, 5)


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    """The `sandbox` fixture (real RIO, BRP and ROD on SQLite or PostgreSQL) with its clock on 1 September 2027."""
    return await rod_in(sandbox, TODAY)


async def _start(settings: Settings) -> RunningSandbox:
    running = build(ALL_SERVICES, settings)
    await running.server.start()
    return running


async def _stop(running: RunningSandbox) -> None:
    await running.server.stop(0.2)
    await running.peers.close()
    running.database.engine.dispose()


def funded_on(feedback: rod_pb2.Feedback | rod_pb2.Enrolment, count_date: dt.date) -> bool:
    return any(
        d.funded
        for d in feedback.funding
        if (d.count_date.year, d.count_date.month, d.count_date.day)
        == (count_date.year, count_date.month, count_date.day)
    )


async def test_registration_answers_with_the_decision_and_pushes_the_same_feedback(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsn = await rod.world.person(TEEN)
    async with FeedbackCollector(school) as feedback:
        answer = await school.register(offering, START, bsn=bsn, key="reg-1")
        await feedback.until(lambda got: len(got) >= 1)
    assert answer.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED
    assert funded_on(answer.enrolment, COUNT)
    [decision] = answer.enrolment.funding
    assert decision.status == rod_pb2.FUNDING_STATUS_PROVISIONAL and list(decision.reason_codes) == ["SBX-FUNDED"]
    [pushed] = feedback.received
    assert pushed.cursor == answer.feedback_cursor
    assert pushed.enrolment_id == answer.enrolment.enrolment_id
    assert pushed.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE
    assert list(pushed.funding) == list(answer.enrolment.funding)


async def test_the_same_idempotency_key_answers_once_and_a_repeated_document_id_is_refused(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsn = await rod.world.person(TEEN)
    document = str(uuid.uuid4())
    first = await school.register(offering, START, bsn=bsn, key="k", document_id=document)
    again = await school.register(offering, START, bsn=bsn, key="k", document_id=document)
    assert again == first
    with pytest.raises(grpc.aio.AioRpcError) as duplicate:
        await school.register(offering, START, bsn=bsn, key="other-key", document_id=document)
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    reason, violations = read_details(duplicate.value)
    assert reason == "SBX-DUPLICATE-DOCUMENT" and [v.field for v in violations] == ["document_id"]
    listed = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=school.metadata
    )
    assert len(listed.enrolments) == 1


async def test_refusals_are_typed_and_name_the_field(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    dead = await rod.world.person(TEEN)
    await rod.world.die(dead, dt.date(2027, 8, 1))

    async def refusal(**kwargs: object) -> tuple[grpc.StatusCode, str, list[str]]:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await school.register(**kwargs)  # type: ignore[arg-type]
        reason, violations = read_details(error.value)
        return error.value.code(), reason, [v.field for v in violations]

    bad_bsn = await refusal(offering=offering, begin=START, bsn="123456789")
    assert bad_bsn == (grpc.StatusCode.INVALID_ARGUMENT, "SBX-INVALID-BSN", ["pupil.bsn"])
    unknown = await refusal(offering=offering, begin=START, bsn="999990019")
    assert unknown == (grpc.StatusCode.FAILED_PRECONDITION, "SBX-PERSON-UNKNOWN", ["pupil.bsn"])
    deceased = await refusal(offering=offering, begin=START, bsn=dead)
    assert deceased == (grpc.StatusCode.FAILED_PRECONDITION, "SBX-PERSON-DECEASED", ["pupil.bsn"])
    alive = await rod.world.person(TEEN)
    elsewhere = Offering(offering.institution_code, "999X999", offering.course_code)
    not_offered = await refusal(offering=elsewhere, begin=START, bsn=alive)
    assert not_offered == (grpc.StatusCode.FAILED_PRECONDITION, "A01060", ["periods[0].location_code"])

    other = School(school.channel, school.sandbox_key, "99ZZ")
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await other.rod.RegisterEnrolment(
            rod_pb2.RegisterEnrolmentRequest(
                document_id=str(uuid.uuid4()),
                pupil=rod_pb2.PupilId(bsn=alive),
                institution_code=offering.institution_code,
                periods=[period(offering, START)],
                sequence=1,
            ),
            metadata=other.metadata,
        )
    assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert read_details(foreign.value)[0] == "AUT401"


async def test_a_double_enrolment_funds_the_first_school_and_signals_both(rod: Rod) -> None:
    first_offering = await rod.world.offering(common_pb2.SECTOR_VO)
    second_offering = await rod.world.offering(common_pb2.SECTOR_VO)
    first, second = rod.school(first_offering), rod.school(second_offering)
    bsn = await rod.world.person(TEEN)
    async with FeedbackCollector(first) as first_feed, FeedbackCollector(second) as second_feed:
        a = await first.register(first_offering, START, bsn=bsn)
        second_document = str(uuid.uuid4())
        b = await second.register(second_offering, START + dt.timedelta(days=1), bsn=bsn, document_id=second_document)
        await first_feed.until(lambda got: len(got) >= 2)
        await second_feed.until(lambda got: len(got) >= 1)
    assert not funded_on(b.enrolment, COUNT)
    assert list(b.enrolment.funding[0].reason_codes) == ["SBX-SECOND-ENROLMENT"]
    assert b.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL
    assert [s.code for s in b.signals] == ["SBX-DOUBLE-ENROLMENT"]
    assert b.signals[0].parameters["other_institution_code"] == first_offering.institution_code
    # The first school hears of the conflict without asking, and keeps its funding.
    latest = first_feed.for_enrolment(a.enrolment.enrolment_id)[-1]
    assert latest.trigger == rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT
    # Both feedbacks name the second school's message as their cause.
    assert latest.cause == rod_pb2.FeedbackCause(trigger=rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT, id=second_document)
    own = second_feed.for_enrolment(b.enrolment.enrolment_id)[-1]
    assert own.cause == rod_pb2.FeedbackCause(trigger=rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE, id=second_document)
    assert funded_on(latest, COUNT)
    assert latest.signals[0].parameters["other_institution_code"] == second_offering.institution_code
    # Each school sees only its own feedback.
    assert {f.institution_code for f in first_feed.received} == {first_offering.institution_code}
    assert {f.institution_code for f in second_feed.received} == {second_offering.institution_code}


async def test_a_pupil_without_bsn_gets_an_onderwijsnummer_that_later_schools_receive_too(rod: Rod) -> None:
    from services.common.identifiers import is_valid_onderwijsnummer

    offering = await rod.world.offering(common_pb2.SECTOR_PO)
    other_offering = await rod.world.offering(common_pb2.SECTOR_PO)
    details = rod_pb2.PupilDetails(
        given_names="Fatima",
        surname="El Amrani",
        birth_date=to_proto_date(dt.date(2022, 3, 1)),
        address=common_pb2.Address(postcode="1012 AB", house_number=7),
    )
    first = await rod.school(offering).register(offering, START, details=details)
    number = first.assigned_onderwijsnummer
    assert is_valid_onderwijsnummer(number) and first.enrolment.pupil.onderwijsnummer == number
    again = await rod.school(other_offering).register(other_offering, START, details=details)
    assert again.assigned_onderwijsnummer == "" and again.enrolment.pupil.onderwijsnummer == number
    identified = await rod.school(offering).rod.IdentifyPupil(
        rod_pb2.IdentifyPupilRequest(details=details), metadata=rod.school(offering).metadata
    )
    assert identified.pupil.onderwijsnummer == number and not identified.newly_assigned
    # 4 on 1 Feb 2027 is not reached by a child born 1 Mar 2022... but the next po count date, 1 Feb 2028, is.
    assert [d.count_date.year for d in first.enrolment.funding] == [2028]


async def test_a_pupil_sent_with_details_is_found_in_brp_first_and_gets_an_onderwijsnummer_only_without_a_match(
    rod: Rod,
) -> None:
    """DUO looks for the BSN with the personal details before it issues an onderwijsnummer (rules.bsn_from_brp)."""
    offering = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(offering)
    born = dt.date(2021, 5, 17)
    bsn = await rod.world.person(born)  # Sam Jansen, Dorpsstraat 3, 1012AB, sex O

    def sam(**changes: object) -> rod_pb2.PupilDetails:
        fields: dict[str, object] = {
            "given_names": "sam",
            "surname": "JANSEN",
            "birth_date": to_proto_date(born),
            "address": common_pb2.Address(postcode="1012 ab", house_number=3),
            **changes,
        }
        return rod_pb2.PupilDetails(**fields)  # type: ignore[arg-type]

    found = await school.register(offering, START, details=sam())
    assert found.enrolment.pupil.bsn == bsn and found.assigned_onderwijsnummer == ""
    identified = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=sam()), metadata=school.metadata)
    assert identified.pupil.bsn == bsn and not identified.newly_assigned

    # Another house number: no BRP match, so an onderwijsnummer (the same one each time).
    elsewhere = sam(address=common_pb2.Address(postcode="1012AB", house_number=5))
    first = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=elsewhere), metadata=school.metadata)
    again = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=elsewhere), metadata=school.metadata)
    assert first.pupil.onderwijsnummer.startswith("10") and first.newly_assigned
    assert again.pupil.onderwijsnummer == first.pupil.onderwijsnummer and not again.newly_assigned

    # A twin with the same name at the same address: two matches, so ROD does not guess.
    await rod.world.person(born)
    ambiguous = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=sam()), metadata=school.metadata)
    assert ambiguous.pupil.onderwijsnummer and ambiguous.newly_assigned


async def test_a_refused_message_is_pushed_once_as_rejected_feedback_to_its_own_school_only(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    other_offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school, other = rod.school(offering), rod.school(other_offering)
    document = str(uuid.uuid4())
    async with FeedbackCollector(school) as feed, FeedbackCollector(other) as other_feed:
        for _ in range(2):  # the same document sent twice is refused twice, but rejected once
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await school.register(offering, START, bsn="999990019", document_id=document)
            assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
            assert read_details(refused.value)[0] == "SBX-PERSON-UNKNOWN"
        # A shape error is no processed message: no feedback.
        with pytest.raises(grpc.aio.AioRpcError) as malformed:
            await school.register(offering, START, bsn="123456789")
        assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        later = await school.register(offering, START, bsn=await rod.world.person(TEEN))
        theirs = await other.register(other_offering, START, bsn=await rod.world.person(TEEN))
        # Feedback arrives in cursor order: once the later approval is in, any second rejection would be too.
        await feed.until(lambda got: any(f.cursor == later.feedback_cursor for f in got))
        await other_feed.until(lambda got: any(f.cursor == theirs.feedback_cursor for f in got))
    [rejected] = [f for f in feed.received if f.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED]
    assert rejected.document_id == document and rejected.institution_code == offering.institution_code
    assert rejected.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE and rejected.pupil.bsn == "999990019"
    assert [(s.code, dict(s.parameters)) for s in rejected.signals] == [("SBX-PERSON-UNKNOWN", {"field": "pupil.bsn"})]
    assert not list(rejected.funding)
    assert [f.outcome for f in other_feed.received] == [rod_pb2.FEEDBACK_OUTCOME_APPROVED]


async def test_a_refused_change_is_rejected_on_the_enrolments_school(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    registered = await school.register(offering, START, bsn=await rod.world.person(TEEN))
    enrolment_id = registered.enrolment.enrolment_id
    document = str(uuid.uuid4())
    async with FeedbackCollector(school, after_cursor=registered.feedback_cursor) as feed:
        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await school.rod.EndEnrolment(
                rod_pb2.EndEnrolmentRequest(
                    document_id=document, enrolment_id=enrolment_id, end_date=to_proto_date(COUNT), sequence=1
                ),
                metadata=school.metadata,
            )
        assert read_details(stale.value)[0] == "SBX-SEQUENCE-NOT-HIGHER"
        [rejected] = await feed.until(lambda got: len(got) >= 1)
    assert rejected.outcome == rod_pb2.FEEDBACK_OUTCOME_REJECTED and rejected.enrolment_id == enrolment_id
    assert rejected.document_id == document and [s.code for s in rejected.signals] == ["SBX-SEQUENCE-NOT-HIGHER"]
    # The rejected document is no duplicate: sent again, now correct, it is processed.
    ended = await school.rod.EndEnrolment(
        rod_pb2.EndEnrolmentRequest(
            document_id=document, enrolment_id=enrolment_id, end_date=to_proto_date(COUNT), sequence=2
        ),
        metadata=school.metadata,
    )
    assert ended.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED


async def test_change_end_and_delete_follow_the_sequence_and_free_funding(rod: Rod) -> None:
    first_offering = await rod.world.offering(common_pb2.SECTOR_VO)
    second_offering = await rod.world.offering(common_pb2.SECTOR_VO)
    first, second = rod.school(first_offering), rod.school(second_offering)
    bsn = await rod.world.person(TEEN)
    a = await first.register(first_offering, START, bsn=bsn)
    b = await second.register(second_offering, START + dt.timedelta(days=1), bsn=bsn)
    enrolment_id = a.enrolment.enrolment_id
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await first.rod.EndEnrolment(
            rod_pb2.EndEnrolmentRequest(
                document_id=str(uuid.uuid4()), enrolment_id=enrolment_id, end_date=to_proto_date(COUNT), sequence=1
            ),
            metadata=first.metadata,
        )
    assert stale.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert [v.field for v in read_details(stale.value)[1]] == ["sequence"]
    # Ending on the count date itself still counts.
    ended = await first.rod.EndEnrolment(
        rod_pb2.EndEnrolmentRequest(
            document_id=str(uuid.uuid4()), enrolment_id=enrolment_id, end_date=to_proto_date(COUNT), sequence=2
        ),
        metadata=first.metadata,
    )
    assert ended.enrolment.status == rod_pb2.ENROLMENT_STATUS_ENDED and funded_on(ended.enrolment, COUNT)
    # Moving the end before the count date hands the funding to the other school.
    changed = await first.rod.ChangeEnrolment(
        rod_pb2.ChangeEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            enrolment_id=enrolment_id,
            periods=[period(first_offering, START, COUNT - dt.timedelta(days=1))],
            sequence=3,
        ),
        metadata=first.metadata,
    )
    assert not funded_on(changed.enrolment, COUNT)
    other = await second.rod.GetEnrolment(
        rod_pb2.GetEnrolmentRequest(enrolment_id=b.enrolment.enrolment_id), metadata=second.metadata
    )
    assert funded_on(other, COUNT)
    deleted = await first.rod.DeleteEnrolment(
        rod_pb2.DeleteEnrolmentRequest(document_id=str(uuid.uuid4()), enrolment_id=enrolment_id),
        metadata=first.metadata,
    )
    assert deleted.enrolment.status == rod_pb2.ENROLMENT_STATUS_DELETED
    with pytest.raises(grpc.aio.AioRpcError) as foreign:
        await second.rod.GetEnrolment(rod_pb2.GetEnrolmentRequest(enrolment_id=enrolment_id), metadata=second.metadata)
    assert foreign.value.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_subscriber_resumes_after_its_acknowledged_cursor_without_gap_or_duplicate(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    cursors = []
    for _ in range(5):
        answer = await school.register(offering, START, bsn=await rod.world.person(TEEN))
        cursors.append(answer.feedback_cursor)
    assert cursors == sorted(cursors)
    await school.rod.AcknowledgeFeedback(
        rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=cursors[1]), metadata=school.metadata
    )
    # An acknowledgement never moves back.
    back = await school.rod.AcknowledgeFeedback(
        rod_pb2.AcknowledgeFeedbackRequest(subscriber="package", cursor=cursors[0]), metadata=school.metadata
    )
    assert back.acknowledged_cursor == cursors[1]
    call = school.rod.StreamFeedback(
        rod_pb2.StreamFeedbackRequest(subscriber="package", resume_from_acknowledged=True), metadata=school.metadata
    )
    resumed = [await call.read() for _ in range(3)]
    call.cancel()
    assert [f.cursor for f in resumed] == cursors[2:]
    # A second subscriber from the start sees all of them, in order.
    async with FeedbackCollector(school) as everything:
        await everything.until(lambda got: len(got) >= 5)
    assert [f.cursor for f in everything.received] == cursors


async def test_death_emigration_and_an_ended_offering_push_new_feedback_to_each_school(rod: Rod) -> None:
    vo = await rod.world.offering(common_pb2.SECTOR_VO)
    other_vo = await rod.world.offering(common_pb2.SECTOR_VO)
    school, other = rod.school(vo), rod.school(other_vo)
    dies, emigrates, stays = [await rod.world.person(TEEN) for _ in range(3)]
    async with FeedbackCollector(school) as feed, FeedbackCollector(other) as other_feed:
        dying = await school.register(vo, START, bsn=dies)
        elsewhere = await other.register(other_vo, START + dt.timedelta(days=1), bsn=dies)
        leaving = await school.register(vo, START, bsn=emigrates)
        staying = await other.register(other_vo, START, bsn=stays)
        death = await rod.world.die(dies, dt.date(2027, 9, 20))
        await rod.world.emigrate(emigrates, dt.date(2027, 9, 21))
        await rod.world.end_offering(other_vo, dt.date(2027, 9, 22))

        def last(collector: FeedbackCollector, enrolment: rod_pb2.EnrolmentResponse) -> rod_pb2.Feedback | None:
            mine = collector.for_enrolment(enrolment.enrolment.enrolment_id)
            return mine[-1] if mine else None

        await feed.until(
            lambda _: (f := last(feed, leaving)) is not None and f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE
        )
        await other_feed.until(
            lambda _: (f := last(other_feed, staying)) is not None and f.trigger == rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE
        )
        await feed.until(
            lambda _: (f := last(feed, dying)) is not None and f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE
        )
    died = last(feed, dying)
    assert died is not None and list(died.funding[0].reason_codes) == ["SBX-DECEASED"]
    assert "SBX-PUPIL-DECEASED" in [s.code for s in died.signals]
    emigrated = last(feed, leaving)
    assert emigrated is not None and list(emigrated.funding[0].reason_codes) == ["SBX-ABROAD"]
    ended = last(other_feed, staying)
    assert ended is not None and list(ended.funding[0].reason_codes) == ["SBX-OFFERING-ENDED"]
    assert "SBX-COURSE-ENDED" in [s.code for s in ended.signals]
    also_died = [
        f
        for f in other_feed.for_enrolment(elsewhere.enrolment.enrolment_id)
        if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE
    ]
    assert also_died and "SBX-DECEASED" in also_died[-1].funding[0].reason_codes

    # Every feedback names its cause, and the cause trail finds all of it, at every school.
    assert died.cause == rod_pb2.FeedbackCause(trigger=rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE, id=death)
    assert ended.cause.trigger == rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE and ended.cause.id.startswith("rio:")
    trail = await rod.school(vo).rod.ListFeedback(
        rod_pb2.ListFeedbackRequest(cause_id=death), metadata=rod.admin_metadata
    )
    assert sorted(f.enrolment_id for f in trail.feedback) == sorted(
        [dying.enrolment.enrolment_id, elsewhere.enrolment.enrolment_id]
    )
    assert {f.institution_code for f in trail.feedback} == {vo.institution_code, other_vo.institution_code}
    as_school = await school.rod.ListFeedback(rod_pb2.ListFeedbackRequest(cause_id=death), metadata=school.metadata)
    assert [f.enrolment_id for f in as_school.feedback] == [dying.enrolment.enrolment_id]
    by_rio = await rod.school(vo).rod.ListFeedback(
        rod_pb2.ListFeedbackRequest(cause_id=ended.cause.id), metadata=rod.admin_metadata
    )
    assert ended.cursor in [f.cursor for f in by_rio.feedback]
    # The ended offering's enrolments, and any other enrolment of their pupils whose decision it changed.
    assert {f.trigger for f in by_rio.feedback} == {rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE}
    assert {f.enrolment_id for f in by_rio.feedback} >= {staying.enrolment.enrolment_id}


async def test_an_ended_location_or_school_ends_the_funding_of_the_enrolments_there(rod: Rod) -> None:
    closing_site = await rod.world.offering(common_pb2.SECTOR_VO)
    closing_school = await rod.world.offering(common_pb2.SECTOR_VO)
    open_school = await rod.world.offering(common_pb2.SECTOR_VO)
    at_site, at_school, elsewhere = rod.school(closing_site), rod.school(closing_school), rod.school(open_school)
    async with (
        FeedbackCollector(at_site) as site_feed,
        FeedbackCollector(at_school) as school_feed,
        FeedbackCollector(elsewhere) as other_feed,
    ):
        moved = await at_site.register(closing_site, START, bsn=await rod.world.person(TEEN))
        closed = await at_school.register(closing_school, START, bsn=await rod.world.person(TEEN))
        kept = await elsewhere.register(open_school, START, bsn=await rod.world.person(TEEN))
        assert all(funded_on(a.enrolment, COUNT) for a in (moved, closed, kept))
        await rod.world.end_location(closing_site, dt.date(2027, 9, 22))
        await rod.world.end_provider(closing_school, dt.date(2027, 9, 23))

        def rio_feedback(collector: FeedbackCollector, answer: rod_pb2.EnrolmentResponse) -> list[rod_pb2.Feedback]:
            return [
                f
                for f in collector.for_enrolment(answer.enrolment.enrolment_id)
                if f.trigger == rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE
            ]

        await site_feed.until(lambda _: rio_feedback(site_feed, moved))
        await school_feed.until(lambda _: rio_feedback(school_feed, closed))
        # The ROD has the location's end now: a later registration there is decided with it at once.
        late = await at_site.register(closing_site, START, bsn=await rod.world.person(TEEN))
    for pushed, ended_record in (
        (rio_feedback(site_feed, moved)[-1], "location"),
        (rio_feedback(school_feed, closed)[-1], "school"),
    ):
        assert not funded_on(pushed, COUNT) and list(pushed.funding[0].reason_codes) == ["SBX-OFFERING-ENDED"]
        ended = [s for s in pushed.signals if s.code == "SBX-COURSE-ENDED"]
        assert [s.parameters["ended_record"] for s in ended] == [ended_record]
    assert not funded_on(late.enrolment, COUNT) and "SBX-OFFERING-ENDED" in late.enrolment.funding[0].reason_codes
    assert not rio_feedback(other_feed, kept)
    still = await elsewhere.rod.GetEnrolment(
        rod_pb2.GetEnrolmentRequest(enrolment_id=kept.enrolment.enrolment_id), metadata=elsewhere.metadata
    )
    assert funded_on(still, COUNT)


async def test_a_board_ending_its_use_of_a_location_flags_its_pupils_there_and_not_the_next_boards(rod: Rod) -> None:
    old = await rod.world.offering(common_pb2.SECTOR_VO)
    rio, admin = rod.world.rio, rod.world.metadata
    at_old = rod.school(old)

    def rio_feedback(collector: FeedbackCollector, answer: rod_pb2.EnrolmentResponse) -> list[rod_pb2.Feedback]:
        return [
            f
            for f in collector.for_enrolment(answer.enrolment.enrolment_id)
            if f.trigger == rod_pb2.FEEDBACK_TRIGGER_RIO_CHANGE
        ]

    async with FeedbackCollector(at_old) as old_feed:
        stayed = await at_old.register(old, START, bsn=await rod.world.person(TEEN))
        assert funded_on(stayed.enrolment, COUNT)
        # Board 1 stops using the location on 15 September, before the count date.
        handover = dt.date(2027, 9, 15)
        [use] = (
            await rio.ListLocationUses(
                rio_pb2.ListLocationUsesRequest(location_code=old.location_code, all_periods=True), metadata=admin
            )
        ).uses
        await rio.EndLocationUse(
            rio_pb2.EndRecordRequest(code=use.use_id, end_date=to_proto_date(handover)), metadata=admin
        )
        await old_feed.until(lambda _: rio_feedback(old_feed, stayed))
    pushed = rio_feedback(old_feed, stayed)[-1]
    assert not funded_on(pushed, COUNT) and list(pushed.funding[0].reason_codes) == ["SBX-OFFERING-ENDED"]
    [signal] = [s for s in pushed.signals if s.code == "SBX-COURSE-ENDED"]
    assert (signal.parameters["ended_record"], signal.parameters["date"]) == ("location_use", handover.isoformat())

    # Board 2 takes the location over the day after and teaches there: its pupils are not flagged.
    since = to_proto_date(dt.date(2020, 1, 1))
    board2 = await rio.CreateBoard(rio_pb2.CreateBoardRequest(name="Stichting Nieuw", begin_date=since), metadata=admin)
    taken_over = to_proto_date(handover + dt.timedelta(days=1))
    await rio.CreateLocationUse(
        rio_pb2.CreateLocationUseRequest(
            location_code=old.location_code, board_code=board2.board_code, begin_date=taken_over
        ),
        metadata=admin,
    )
    provider2 = await rio.CreateProvider(
        rio_pb2.CreateProviderRequest(
            board_code=board2.board_code, name="Nieuwe school", sector=common_pb2.SECTOR_VO, begin_date=since
        ),
        metadata=admin,
    )
    offered2 = await rio.CreateCourseOffering(
        rio_pb2.CreateCourseOfferingRequest(
            provider_code=provider2.provider_code,
            course_code=old.course_code,
            location_code=old.location_code,
            begin_date=taken_over,
        ),
        metadata=admin,
    )
    new = Offering(provider2.institution_code, old.location_code, old.course_code, offered2.offering_id)
    at_new = rod.school(new)
    async with FeedbackCollector(at_new) as new_feed:
        arrived = await at_new.register(new, handover + dt.timedelta(days=1), bsn=await rod.world.person(TEEN))
        # A later change of the old use (shortened by a day) reaches ROD and touches the old board's pupil only.
        await rio.EndLocationUse(
            rio_pb2.EndRecordRequest(code=use.use_id, end_date=to_proto_date(handover - dt.timedelta(days=1))),
            metadata=admin,
        )
        async with FeedbackCollector(at_old) as again:
            await again.until(
                lambda _: any(
                    s.parameters.get("date") == (handover - dt.timedelta(days=1)).isoformat()
                    for f in rio_feedback(again, stayed)
                    for s in f.signals
                )
            )
    assert funded_on(arrived.enrolment, COUNT)
    assert not [s for s in arrived.signals if s.code == "SBX-COURSE-ENDED"]
    assert not rio_feedback(new_feed, arrived)


async def test_reevaluation_resumes_after_a_restart_without_repeating_itself(database_url: str) -> None:
    settings = Settings(database_url=database_url, port=0, stream_poll_seconds=0.2, shutdown_grace_seconds=0.2)
    running = await _start(settings)
    channel = grpc.aio.insecure_channel(running.server.address)
    created = await sandbox_pb2_grpc.SandboxAdminStub(channel).CreateSandbox(sandbox_pb2.CreateSandboxRequest())
    rod = Rod(
        running,
        channel,
        created.sandbox_key,
        created.sandbox.sandbox_id,
        RealWorld(channel, created.sandbox_key),
    )
    try:
        await rod.set_clock(TODAY)
        offering = await rod.world.offering(common_pb2.SECTOR_VO)
        school = rod.school(offering)
        dies, leaves = await rod.world.person(TEEN), await rod.world.person(TEEN)
        first = await school.register(offering, START, bsn=dies)
        second = await school.register(offering, START, bsn=leaves)
        async with FeedbackCollector(school) as feed:
            await rod.world.die(dies, dt.date(2027, 9, 20))
            await feed.until(lambda got: any(f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE for f in got))
        # A new process on the same database: ROD's stored cursors say where it was in BRP's stream.
        await _stop(rod.running)
        rod.running = await _start(settings)
        await rod.channel.close()
        rod.channel = grpc.aio.insecure_channel(rod.running.server.address)
        rod.world.use_channel(rod.channel)
        school = rod.school(offering)
        await rod.world.emigrate(leaves, dt.date(2027, 9, 25))
        async with FeedbackCollector(school) as feed:
            await feed.until(lambda got: len(got) >= 4)
            await asyncio.sleep(0.5)  # room for a wrongly repeated re-evaluation to show up
        seen = [(f.enrolment_id, f.trigger) for f in feed.received]
        assert seen == [
            (first.enrolment.enrolment_id, rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE),
            (second.enrolment.enrolment_id, rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE),
            (first.enrolment.enrolment_id, rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE),
            (second.enrolment.enrolment_id, rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE),
        ]
        assert list(feed.received[2].funding[0].reason_codes) == ["SBX-DECEASED"]
        assert list(feed.received[3].funding[0].reason_codes) == ["SBX-ABROAD"]
    finally:
        await rod.channel.close()
        await _stop(rod.running)


async def test_a_corrected_birth_date_changes_the_age_decision(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_PO)
    school = rod.school(offering)
    # Turns 4 the day after the po count date of 1 February 2028: not counted.
    bsn = await rod.world.person(dt.date(2024, 2, 2))
    answer = await school.register(offering, START, bsn=bsn)
    assert [list(d.reason_codes) for d in answer.enrolment.funding] == [["SBX-PO-UNDER-4"]]
    async with FeedbackCollector(school) as feed:
        await rod.world.correct_birth_date(bsn, dt.date(2024, 2, 1))
        await feed.until(lambda got: any(f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE for f in got))
    corrected = [f for f in feed.received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE][-1]
    assert corrected.funding[0].funded and list(corrected.funding[0].reason_codes) == ["SBX-FUNDED"]


async def test_past_the_count_date_the_final_count_matches_the_feedback(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    rival = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    pupils = [await rod.world.person(TEEN) for _ in range(4)]
    registered = [await school.register(offering, START, bsn=bsn) for bsn in pupils]
    # A later enrolment elsewhere does not take this school's funding (it only signals the conflict).
    await rod.school(rival).register(rival, START, bsn=pupils[0])
    # One pupil leaves before the count date.
    await school.rod.EndEnrolment(
        rod_pb2.EndEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            enrolment_id=registered[3].enrolment.enrolment_id,
            end_date=to_proto_date(COUNT - dt.timedelta(days=1)),
            sequence=2,
        ),
        metadata=school.metadata,
    )
    async with FeedbackCollector(school) as feed:
        # The day after the correction window: the count is final, and ROD tells each school so.
        await rod.set_clock(dt.datetime(2027, 10, 30, 12, tzinfo=dt.UTC))
        await feed.until(
            lambda got: len({f.enrolment_id for f in got if f.trigger == rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE}) == 4
        )
    count = await school.rod.GetFundingCount(
        rod_pb2.GetFundingCountRequest(institution_code=offering.institution_code, count_date=to_proto_date(COUNT)),
        metadata=school.metadata,
    )
    assert count.status == rod_pb2.FUNDING_STATUS_FINAL
    latest: dict[str, rod_pb2.Feedback] = {}
    for feedback in feed.received:
        latest[feedback.enrolment_id] = feedback
    for feedback in latest.values():
        on_count = [d for d in feedback.funding if d.count_date == to_proto_date(COUNT)]
        assert on_count and on_count[0].status == rod_pb2.FUNDING_STATUS_FINAL
    funded = sorted(eid for eid, f in latest.items() if funded_on(f, COUNT))
    assert count.funded_pupils == len(funded) == 3
    assert sorted(count.funded_enrolment_ids) == funded
    # A change after the window no longer alters that count.
    await school.rod.EndEnrolment(
        rod_pb2.EndEnrolmentRequest(
            document_id=str(uuid.uuid4()),
            enrolment_id=registered[0].enrolment.enrolment_id,
            end_date=to_proto_date(dt.date(2027, 9, 15)),
            sequence=2,
        ),
        metadata=school.metadata,
    )
    again = await school.rod.GetFundingCount(
        rod_pb2.GetFundingCountRequest(institution_code=offering.institution_code, count_date=to_proto_date(COUNT)),
        metadata=school.metadata,
    )
    assert again.funded_pupils == 3


async def test_schools_registering_one_pupil_at_the_same_moment_leave_exactly_one_funded(rod: Rod) -> None:
    offerings = [await rod.world.offering(common_pb2.SECTOR_VO) for _ in range(4)]
    bsn = await rod.world.person(TEEN)
    answers = await asyncio.gather(*(rod.school(o).register(o, START, bsn=bsn) for o in offerings))
    current = [
        await rod.school(o).rod.GetEnrolment(
            rod_pb2.GetEnrolmentRequest(enrolment_id=a.enrolment.enrolment_id), metadata=rod.school(o).metadata
        )
        for o, a in zip(offerings, answers, strict=True)
    ]
    assert sum(funded_on(e, COUNT) for e in current) == 1


async def test_identify_by_bsn_and_list_by_pupil_and_date(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsn = await rod.world.person(TEEN)
    identified = await school.rod.IdentifyPupil(
        rod_pb2.IdentifyPupilRequest(bsn=bsn, details=rod_pb2.PupilDetails(birth_date=to_proto_date(TEEN))),
        metadata=school.metadata,
    )
    assert identified.pupil.bsn == bsn and not identified.newly_assigned
    with pytest.raises(grpc.aio.AioRpcError) as wrong_birth:
        await school.rod.IdentifyPupil(
            rod_pb2.IdentifyPupilRequest(
                bsn=bsn, details=rod_pb2.PupilDetails(birth_date=to_proto_date(dt.date(2014, 5, 6)))
            ),
            metadata=school.metadata,
        )
    assert [v.field for v in read_details(wrong_birth.value)[1]] == ["details.birth_date"]
    await school.register(offering, START, end=dt.date(2027, 12, 31), bsn=bsn)
    by_pupil = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(pupil=rod_pb2.PupilId(bsn=bsn)), metadata=school.metadata
    )
    assert [e.institution_code for e in by_pupil.enrolments] == [offering.institution_code]
    for day, expected in ((dt.date(2027, 12, 31), 1), (dt.date(2028, 1, 1), 0)):
        active = await school.rod.ListEnrolments(
            rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code, active_on=to_proto_date(day)),
            metadata=school.metadata,
        )
        assert len(active.enrolments) == expected
    with pytest.raises(grpc.aio.AioRpcError) as neither:
        await rod.school(offering).rod.ListEnrolments(rod_pb2.ListEnrolmentsRequest(), metadata=rod.admin_metadata)
    assert neither.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_resetting_the_sandbox_purges_rods_records_of_it_only(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    await school.register(offering, START, bsn=await rod.world.person(TEEN))
    other = await sandbox_pb2_grpc.SandboxAdminStub(rod.channel).CreateSandbox(sandbox_pb2.CreateSandboxRequest())
    with pytest.raises(grpc.aio.AioRpcError) as not_theirs:
        await school.rod.GetFundingCount(
            rod_pb2.GetFundingCountRequest(institution_code="99ZZ", count_date=to_proto_date(COUNT)),
            metadata=school.metadata,
        )
    assert not_theirs.value.code() == grpc.StatusCode.PERMISSION_DENIED
    # Another vendor's sandbox sees none of it.
    elsewhere = School(rod.channel, other.sandbox_key, offering.institution_code)
    listed = await elsewhere.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=elsewhere.metadata
    )
    assert not listed.enrolments
    await sandbox_pb2_grpc.SandboxAdminStub(rod.channel).ResetSandbox(
        sandbox_pb2.ResetSandboxRequest(), metadata=rod.admin_metadata
    )
    after = await school.rod.ListEnrolments(
        rod_pb2.ListEnrolmentsRequest(institution_code=offering.institution_code), metadata=school.metadata
    )
    assert not after.enrolments
    # The reset purged RIO too: the school is gone, so its stream is refused rather than replaying old feedback.
    call = school.rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(), metadata=school.metadata, timeout=5)
    with pytest.raises(grpc.aio.AioRpcError) as drained:
        await call.read()
    assert drained.value.code() == grpc.StatusCode.NOT_FOUND
