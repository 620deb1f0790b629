"""ROD applies a burst of BRP changes in batches: every school hears of each of its pupils once, with its cause."""

from __future__ import annotations

import datetime as dt
import uuid

from services._gen.registry.v1 import brp_pb2, common_pb2, rod_pb2
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import _BRP_NS, FeedbackCollector, Rod, mutation, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)


async def test_one_document_of_many_deaths_reaches_each_school_once_per_pupil(sandbox: SandboxHarness) -> None:
    rod: Rod = await rod_in(sandbox, TODAY)
    offerings = [await rod.world.offering(common_pb2.SECTOR_VO) for _ in range(3)]
    schools = [rod.school(offering) for offering in offerings]
    pupils: dict[str, tuple[int, str]] = {}  # bsn -> (school index, enrolment id)
    for n in range(24):
        bsn = await rod.world.person(TEEN)
        answer = await schools[n % 3].register(offerings[n % 3], START, bsn=bsn)
        pupils[bsn] = (n % 3, answer.enrolment.enrolment_id)
    bystander = await rod.world.person(TEEN)  # in BRP, enrolled nowhere: ROD holds nothing of them
    died = dt.date(2027, 9, 20)
    causes = {bsn: str(uuid.uuid4()) for bsn in [*pupils, bystander]}
    messages = b"".join(
        mutation(bsn, 2, "overleden", died, f"<Overlijden><Datum>{died}</Datum></Overlijden>", causes[bsn]).replace(
            f' xmlns="{_BRP_NS}"'.encode(), b""
        )
        for bsn in causes
    )
    collectors = [FeedbackCollector(school) for school in schools]
    for collector in collectors:
        await collector.__aenter__()
    try:
        answer = await rod.world.brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(
                xml_document=f'<MutatieBericht xmlns="{_BRP_NS}">'.encode() + messages + b"</MutatieBericht>"
            ),
            metadata=rod.world.metadata,
        )
        assert [r.outcome for r in answer.results] == [brp_pb2.MESSAGE_OUTCOME_APPLIED] * len(causes)

        def brp_feedback(received: list[rod_pb2.Feedback]) -> list[rod_pb2.Feedback]:
            return [f for f in received if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE]

        for collector in collectors:
            await collector.until(lambda received: len(brp_feedback(received)) >= 8)
        for index, collector in enumerate(collectors):
            got = brp_feedback(collector.received)
            mine = {bsn: enrolment for bsn, (school, enrolment) in pupils.items() if school == index}
            assert sorted(f.enrolment_id for f in got) == sorted(mine.values())  # each pupil once
            assert {f.cause.id for f in got} == {causes[bsn] for bsn in mine}
            assert all(list(f.funding[0].reason_codes) == ["SBX-DECEASED"] for f in got)
            cursors = [f.cursor for f in collector.received]
            assert cursors == sorted(set(cursors))  # in order, no duplicate
    finally:
        for collector in collectors:
            await collector.__aexit__(None, None, None)
    trail = await schools[0].rod.ListFeedback(
        rod_pb2.ListFeedbackRequest(cause_id=causes[bystander]), metadata=rod.admin_metadata
    )
    assert list(trail.feedback) == []


async def test_two_changes_of_one_pupil_in_one_document_each_bring_feedback_naming_them(
    sandbox: SandboxHarness,
) -> None:
    rod: Rod = await rod_in(sandbox, TODAY)
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsn = await rod.world.person(TEEN)
    enrolment = (await school.register(offering, START, bsn=bsn)).enrolment.enrolment_id
    emigration, death = str(uuid.uuid4()), str(uuid.uuid4())
    left, died = dt.date(2027, 9, 21), dt.date(2027, 9, 10)
    emigrates = f"<Emigratie><Land>BE</Land><DatumVertrek>{left}</DatumVertrek></Emigratie>"
    dies = f"<Overlijden><Datum>{died}</Datum></Overlijden>"
    document = (
        f'<MutatieBericht xmlns="{_BRP_NS}">'.encode()
        + mutation(bsn, 2, "verhuisd.emigratie", left, emigrates, emigration).replace(
            f' xmlns="{_BRP_NS}"'.encode(), b""
        )
        + mutation(bsn, 3, "overleden", died, dies, death).replace(f' xmlns="{_BRP_NS}"'.encode(), b"")
        + b"</MutatieBericht>"
    )
    async with FeedbackCollector(school) as feed:
        await rod.world.brp.SubmitChanges(
            brp_pb2.SubmitChangesRequest(xml_document=document), metadata=rod.world.metadata
        )
        await feed.until(lambda received: death in [f.cause.id for f in received])
    brp = [f for f in feed.for_enrolment(enrolment) if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE]
    assert [f.cause.id for f in brp] == [emigration, death]
    assert list(brp[0].funding[0].reason_codes) == ["SBX-ABROAD"]
    assert "SBX-DECEASED" in brp[1].funding[0].reason_codes
