"""History over real gRPC on SQLite and PostgreSQL (issue 13.3, 13.4): BRP serves stays abroad and corrected values,
ROD decides a count date from where the pupil lived on it, and ROD's follow indication ends with its last enrolment."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import uuid

import grpc
import pytest

from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, common_pb2, rod_pb2
from services.brp_sync.rules import Emigratie, Gebeurtenis, Mutatie, Persoon, Verblijfplaats
from services.brp_sync.xml_codec import batch_document
from services.common.caller import internal_metadata
from services.common.dates import to_proto_date
from services.common.errors import read_details
from tests.conftest import SandboxHarness
from tests.helpers.brp import DAY, get, move_within, new_id, seed, stub, submit
from tests.helpers.rod_world import FeedbackCollector, Rod, School, rod_in

# --- BRP ---


def _change(person: brp_pb2.Person, sequence: int, event: Gebeurtenis, on: dt.date, **categories: object) -> Mutatie:
    return Mutatie(
        bericht_id=new_id(),
        bsn=person.bsn,
        volgnummer=sequence,
        gemeentecode=person.address.municipality_code,
        gebeurtenis=event,
        datum_ingang=on,
        **categories,  # type: ignore[arg-type]
    )


async def test_the_person_and_the_stream_carry_stays_abroad_and_corrected_values(sandbox: SandboxHarness) -> None:
    person = (await seed(sandbox))[0]
    left, back = DAY - dt.timedelta(days=60), DAY - dt.timedelta(days=20)
    home = Verblijfplaats(
        "Kerkstraat", 4, person.address.postcode, person.address.city, person.address.municipality_code
    )
    born = dt.date(person.birth_date.year, person.birth_date.month, person.birth_date.day)
    answer = await submit(
        sandbox,
        batch_document(
            [
                _change(person, 1, Gebeurtenis.EMIGRATIE, left, emigratie=Emigratie("9089", left)),
                _change(person, 2, Gebeurtenis.IMMIGRATIE, back, verblijfplaats=home),
                _change(
                    person, 3, Gebeurtenis.GECORRIGEERD, DAY, persoon=Persoon(geboortedatum=born + dt.timedelta(1))
                ),
            ]
        ),
    )
    assert [r.outcome for r in answer.results] == [brp_pb2.MESSAGE_OUTCOME_APPLIED] * 3, answer
    served = await get(sandbox, person.bsn)
    assert [(s.country_code, s.start_date, s.end_date) for s in served.residence_abroad] == [
        ("9089", to_proto_date(left), to_proto_date(back))
    ]
    assert not served.HasField("emigration_date") and served.HasField("address")
    [corrected] = served.corrections
    assert (corrected.element, corrected.previous_value, corrected.corrected_value) == (
        "geboortedatum",
        born.isoformat(),
        (born + dt.timedelta(1)).isoformat(),
    )
    # ROD reads the person from the stream: the last change carries the whole history too.
    call = stub(sandbox).StreamPersonChanges(brp_pb2.StreamPersonChangesRequest(), metadata=sandbox.metadata())
    changes = await asyncio.wait_for(_collect(call, 3), timeout=10)
    assert changes[-1].person.residence_abroad == served.residence_abroad
    assert changes[-1].person.corrections == served.corrections
    # A return on the day of departure would make an empty stay: refused with its reason.
    again = await submit(
        sandbox,
        batch_document(
            [
                _change(served, 4, Gebeurtenis.EMIGRATIE, DAY, emigratie=Emigratie("5010", DAY)),
                _change(served, 5, Gebeurtenis.IMMIGRATIE, DAY, verblijfplaats=home),
            ]
        ),
    )
    assert [r.reason_code for r in again.results] == ["", "SBX-BRP-RETURN-BEFORE-DEPARTURE"]


async def _collect(call: grpc.aio.UnaryStreamCall, count: int) -> list[brp_pb2.PersonChange]:
    changes: list[brp_pb2.PersonChange] = []
    async for change in call:
        if not change.cursor:
            continue  # an internal follower of every sandbox is told first that BRP registered it
        changes.append(change)
        if len(changes) == count:
            break
    call.cancel()
    return changes


async def _follow(sandbox: SandboxHarness, bsn: str, end: dt.date | None = None) -> brp_pb2.FollowIndication:
    request = brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=bsn, follow=True)
    if end is not None:
        request.end_date.CopyFrom(to_proto_date(end))
    answer = await stub(sandbox).SetFollowIndication(
        request, metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id)
    )
    return answer.indication


async def test_an_ended_follow_indication_passes_only_changes_before_its_end_and_reopens(
    sandbox: SandboxHarness,
) -> None:
    persons = await seed(sandbox)
    ending, kept = persons[0], persons[1]
    indication = await _follow(sandbox, ending.bsn, DAY)
    assert indication.following and indication.end_date == to_proto_date(DAY)
    await _follow(sandbox, kept.bsn)
    before_end = dataclasses.replace(move_within(ending, 1), datum_ingang=DAY - dt.timedelta(days=1))
    on_end = move_within(ending, 2, street="Lange Gracht")
    await submit(sandbox, batch_document([before_end, on_end, move_within(kept, 1)]))

    async def followed() -> list[tuple[str, int]]:
        call = stub(sandbox).StreamPersonChanges(
            brp_pb2.StreamPersonChangesRequest(subscriber="rod"),
            metadata=internal_metadata(sandbox.internal_token, None),
        )
        return [(c.bsn, c.sequence) for c in await asyncio.wait_for(_collect(call, 2), timeout=10)]

    # The change taking effect on the end date is not passed on; the next followed change is.
    assert await followed() == [(ending.bsn, 1), (kept.bsn, 1)]
    reopened = await _follow(sandbox, ending.bsn)
    assert reopened.following and not reopened.HasField("end_date")
    assert await followed() == [(ending.bsn, 1), (ending.bsn, 2)]


async def test_following_many_at_once_follows_each_and_reads_each_in_order(sandbox: SandboxHarness) -> None:
    persons = await seed(sandbox)
    ending, kept = persons[0], persons[1]
    await _follow(sandbox, ending.bsn, DAY)
    unknown = "111222333"  # 11-proof, outside the test range: never born in this sandbox
    internal = internal_metadata(sandbox.internal_token, sandbox.sandbox_id)
    answer = await stub(sandbox).SetFollowIndications(
        brp_pb2.SetFollowIndicationsRequest(subscriber="rod", bsns=[kept.bsn, unknown, ending.bsn]), metadata=internal
    )
    assert [(r.indication.bsn, r.indication.following, r.HasField("person")) for r in answer.results] == [
        (kept.bsn, True, True),
        (unknown, True, False),
        (ending.bsn, True, True),
    ]
    assert answer.results[0].person.bsn == kept.bsn and not answer.results[2].indication.HasField("end_date")
    # The ended indication was reopened: a change on its old end date now passes, as does the new follow's.
    await submit(sandbox, batch_document([move_within(ending, 1), move_within(kept, 1)]))
    call = stub(sandbox).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(subscriber="rod"), metadata=internal_metadata(sandbox.internal_token, None)
    )
    got = {(c.bsn, c.sequence) for c in await asyncio.wait_for(_collect(call, 2), timeout=10)}
    assert got == {(ending.bsn, 1), (kept.bsn, 1)}
    # Internal only; one bad BSN refuses the call whole.
    with pytest.raises(grpc.aio.AioRpcError) as vendor:
        await stub(sandbox).SetFollowIndications(
            brp_pb2.SetFollowIndicationsRequest(subscriber="rod", bsns=[kept.bsn]), metadata=sandbox.metadata()
        )
    assert vendor.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as bad:
        await stub(sandbox).SetFollowIndications(
            brp_pb2.SetFollowIndicationsRequest(subscriber="rod", bsns=[kept.bsn, "123456789"]), metadata=internal
        )
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT and read_details(bad.value)[0] == "SBX-INVALID-BSN"


async def test_an_impossible_end_date_is_refused_with_its_field(sandbox: SandboxHarness) -> None:
    person = (await seed(sandbox))[0]
    request = brp_pb2.SetFollowIndicationRequest(subscriber="rod", bsn=person.bsn, follow=True)
    request.end_date.year, request.end_date.month, request.end_date.day = 2027, 2, 30
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub(sandbox).SetFollowIndication(
            request, metadata=internal_metadata(sandbox.internal_token, sandbox.sandbox_id)
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations = read_details(refused.value)
    assert [(v.field, v.reason) for v in violations] == [("end_date", "SBX-INVALID-DATE")]


# --- ROD ---

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
COUNT = dt.date(2027, 10, 1)
TEEN = dt.date(2014, 5, 5)


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    return await rod_in(sandbox, TODAY)


def _brp_feedback(feed: FeedbackCollector, enrolment_id: str) -> list[rod_pb2.Feedback]:
    return [f for f in feed.for_enrolment(enrolment_id) if f.trigger == rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE]


def _on_count_date(feedback: rod_pb2.Feedback) -> tuple[bool, list[str]]:
    decision = next(d for d in feedback.funding if d.count_date == to_proto_date(COUNT))
    return decision.funded, list(decision.reason_codes)


async def test_a_count_date_is_decided_by_where_the_pupil_lived_on_it(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    away_on_count, back_before = await rod.world.person(TEEN), await rod.world.person(TEEN)
    first = await school.register(offering, START, bsn=away_on_count)
    second = await school.register(offering, START, bsn=back_before)
    away_id, back_id = first.enrolment.enrolment_id, second.enrolment.enrolment_id
    async with FeedbackCollector(school) as feed:
        await rod.world.emigrate(away_on_count, dt.date(2027, 9, 20))
        await rod.world.come_back(away_on_count, dt.date(2027, 10, 5))
        await rod.world.emigrate(back_before, dt.date(2027, 9, 5))
        await rod.world.come_back(back_before, COUNT)  # back on the count date itself: that day is spent here
        await feed.until(lambda _: len(_brp_feedback(feed, away_id)) >= 2 and len(_brp_feedback(feed, back_id)) >= 2)
    # Abroad on the count date: unfunded for that count, also after coming back.
    assert _on_count_date(_brp_feedback(feed, away_id)[-1]) == (False, ["SBX-ABROAD"])
    # Abroad in between, home again by the count date: funded.
    assert _on_count_date(_brp_feedback(feed, back_id)[0]) == (False, ["SBX-ABROAD"])
    assert _on_count_date(_brp_feedback(feed, back_id)[-1]) == (True, ["SBX-FUNDED"])


async def _end(school: School, enrolment_id: str, on: dt.date) -> None:
    await school.rod.EndEnrolment(
        rod_pb2.EndEnrolmentRequest(
            document_id=str(uuid.uuid4()), enrolment_id=enrolment_id, end_date=to_proto_date(on), sequence=2
        ),
        metadata=school.metadata,
    )


async def _rods_stream_until(rod: Rod, bsn: str, event: int) -> list[brp_pb2.PersonChange]:
    """BRP's stream as ROD follows it (subscriber "rod"), up to and including a change of this kind of this BSN."""
    call = brp_pb2_grpc.BrpServiceStub(rod.channel).StreamPersonChanges(
        brp_pb2.StreamPersonChangesRequest(subscriber="rod"),
        metadata=internal_metadata(rod.running.settings.internal_token, None),
    )
    seen: list[brp_pb2.PersonChange] = []

    async def read() -> None:
        async for change in call:
            if not change.cursor:
                continue  # BRP registered the stream as a confirming follower
            seen.append(change)
            if change.bsn == bsn and change.event_type == event:
                return

    try:
        await asyncio.wait_for(read(), timeout=10)
    finally:
        call.cancel()
    return seen


async def test_rods_follow_indication_ends_with_its_last_enrolment_and_starts_again_on_a_new_one(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    left, deleted, staying = [await rod.world.person(TEEN) for _ in range(3)]
    leaving = await school.register(offering, START, bsn=left)
    removed = await school.register(offering, START, bsn=deleted)
    await school.register(offering, START, bsn=staying)
    last_day = dt.date(2027, 12, 31)
    await _end(school, leaving.enrolment.enrolment_id, last_day)
    await school.rod.DeleteEnrolment(
        rod_pb2.DeleteEnrolmentRequest(document_id=str(uuid.uuid4()), enrolment_id=removed.enrolment.enrolment_id),
        metadata=school.metadata,
    )
    async with FeedbackCollector(school) as feed:
        # ROD ended its indications: the day after the last day enrolled, and the day of the deletion (today).
        await rod.world.move_within(left, last_day)  # still followed: the last day enrolled
        await rod.world.die(left, last_day + dt.timedelta(days=1))
        await rod.world.emigrate(deleted, dt.date(2027, 9, 10))
        sentinel = await rod.world.die(staying, dt.date(2027, 9, 20))
        await feed.until(lambda got: any(f.cause.id == sentinel for f in got))
        await asyncio.sleep(0.3)  # room for a wrongly passed change to show up
    # No re-evaluation for a person ROD no longer follows: the school hears nothing of the death.
    assert _brp_feedback(feed, leaving.enrolment.enrolment_id) == []
    followed = await _rods_stream_until(rod, staying, brp_pb2.PERSON_EVENT_TYPE_DEATH)
    assert [(c.bsn, c.event_type) for c in followed if c.event_type != brp_pb2.PERSON_EVENT_TYPE_BIRTH] == [
        (left, brp_pb2.PERSON_EVENT_TYPE_RELOCATION_WITHIN_MUNICIPALITY),
        (staying, brp_pb2.PERSON_EVENT_TYPE_DEATH),
    ]
    # A new enrolment of the deleted pupil follows the person again: its return reaches ROD, and the count
    # date, spent at home, is funded.
    again = await school.register(offering, START, bsn=deleted)
    assert _on_count_date_of(again.enrolment) == (False, ["SBX-ABROAD"])
    async with FeedbackCollector(school) as feed:
        await rod.world.come_back(deleted, dt.date(2027, 9, 25))
        await feed.until(lambda _: bool(_brp_feedback(feed, again.enrolment.enrolment_id)))
    assert _on_count_date(_brp_feedback(feed, again.enrolment.enrolment_id)[-1]) == (True, ["SBX-FUNDED"])


def _on_count_date_of(enrolment: rod_pb2.Enrolment) -> tuple[bool, list[str]]:
    decision = next(d for d in enrolment.funding if d.count_date == to_proto_date(COUNT))
    return decision.funded, list(decision.reason_codes)


async def test_a_withdrawn_death_funds_the_pupil_again_and_brp_keeps_the_wrong_date(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    bsn = await rod.world.person(TEEN)
    registered = await school.register(offering, START, bsn=bsn)
    enrolment_id = registered.enrolment.enrolment_id
    async with FeedbackCollector(school) as feed:
        await rod.world.die(bsn, dt.date(2027, 9, 20))
        await feed.until(lambda _: len(_brp_feedback(feed, enrolment_id)) >= 1)
        await rod.world.withdraw_death(bsn, dt.date(2027, 9, 22))
        await feed.until(lambda _: len(_brp_feedback(feed, enrolment_id)) >= 2)
    died, withdrawn = _brp_feedback(feed, enrolment_id)
    assert _on_count_date(died) == (False, ["SBX-DECEASED"])
    assert _on_count_date(withdrawn) == (True, ["SBX-FUNDED"]) and not withdrawn.signals
    person = await rod.world.brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn), metadata=rod.admin_metadata)
    assert not person.HasField("death_date")
    assert [(c.element, c.previous_value, c.corrected_value) for c in person.corrections] == [
        ("datum_overlijden", "2027-09-20", "")
    ]
