"""Scenario persons end to end: a vendor enrols each documented test person, only moves the sandbox clock, and
receives the feedback services/rod/README.md (Scenario persons) documents, on SQLite and PostgreSQL.

One sandbox holds them all (seeding is the slow part); each person has its own assertion function, and the
clock walks forward through the dates of the table: S (seed), S+7, S+14, S+30, S+120.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from services._gen.registry.v1 import (
    brp_pb2,
    brp_pb2_grpc,
    common_pb2,
    rio_pb2,
    rio_pb2_grpc,
    rod_pb2,
    rod_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.brp_sync import scenarios
from services.common.dates import from_proto_date
from services.common.identifiers import is_test_bsn, is_valid_onderwijsnummer
from tests.conftest import SandboxHarness
from tests.helpers.rod_world import FeedbackCollector, Offering, School

SEED_DATE = dt.date(2026, 11, 2)
COUNT_DATE = dt.date(2027, 2, 1)  # the next po count date after S
NEXT_COUNT_DATE = dt.date(2028, 2, 1)
BRP = rod_pb2.FEEDBACK_TRIGGER_BRP_CHANGE


async def _set_clock(sandbox: SandboxHarness, day: dt.date) -> None:
    moment = Timestamp()
    moment.FromDatetime(dt.datetime.combine(day, dt.time(10), tzinfo=dt.UTC))
    await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).SetClock(
        sandbox_pb2.SetClockRequest(freeze_at=moment), metadata=sandbox.metadata()
    )


async def _primary_offerings(sandbox: SandboxHarness) -> list[Offering]:
    """Primary schools with an offering that does not end, in RIO's order (the seeder takes the last)."""
    rio = rio_pb2_grpc.RioServiceStub(sandbox.channel)
    providers = await rio.ListProviders(
        rio_pb2.ListProvidersRequest(sector=common_pb2.SECTOR_PO, page=common_pb2.PageRequest(page_size=100)),
        metadata=sandbox.metadata(),
    )
    found: list[Offering] = []
    for provider in providers.providers:
        if provider.validity.HasField("end_date"):
            continue
        offerings = await rio.ListCourseOfferings(
            rio_pb2.ListCourseOfferingsRequest(provider_code=provider.provider_code), metadata=sandbox.metadata()
        )
        for o in offerings.offerings:
            if o.location_code and not o.validity.HasField("end_date"):
                found.append(Offering(provider.institution_code, o.location_code, o.course_code))
                break
    return found


def _decisions(feedback: rod_pb2.Feedback) -> dict[dt.date, tuple[bool, tuple[str, ...], str]]:
    return {from_proto_date(d.count_date): (d.funded, tuple(d.reason_codes), d.status_code) for d in feedback.funding}


def _signals(feedback: rod_pb2.Feedback) -> dict[str, dict[str, str]]:
    return {s.code: dict(s.parameters) for s in feedback.signals}


def _latest(collector: FeedbackCollector, enrolment_id: str) -> rod_pb2.Feedback:
    return collector.for_enrolment(enrolment_id)[-1]


def _has(enrolment_id: str, check: Callable[[rod_pb2.Feedback], bool]) -> Callable[[Sequence[rod_pb2.Feedback]], bool]:
    return lambda received: any(f.enrolment_id == enrolment_id and check(f) for f in received)


async def test_each_scenario_person_gives_its_documented_feedback_when_only_the_clock_moves(
    sandbox: SandboxHarness,
) -> None:
    await _set_clock(sandbox, SEED_DATE)
    seeded = await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=3), metadata=sandbox.metadata()
    )
    assert seeded.created["scenario_enrolments"] == 1
    brp = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    table = await brp.ListScenarioPersons(brp_pb2.ListScenarioPersonsRequest(), metadata=sandbox.metadata())
    assert from_proto_date(table.seed_date) == SEED_DATE
    persons = {p.key: p for p in table.persons}
    assert list(persons) == [p.key for p in scenarios.table().persons]
    assert all(is_test_bsn(p.bsn) for p in table.persons if p.key != "zonder-bsn")
    # The documented dates, in this sandbox's calendar.
    assert from_proto_date(persons["jonger-dan-4"].details.birth_date) == dt.date(2023, 2, 2)
    death = persons["overlijdt"].scheduled_messages[0]
    assert (from_proto_date(death.effective_date), death.event_type) == (
        SEED_DATE + dt.timedelta(days=30),
        brp_pb2.PERSON_EVENT_TYPE_DEATH,
    )
    assert not death.HasField("sent_at")

    schools = await _primary_offerings(sandbox)
    mine, other = schools[0], schools[-1]
    school = School(sandbox.channel, sandbox.sandbox_key, mine.institution_code)
    other_school = School(sandbox.channel, sandbox.sandbox_key, other.institution_code)
    async with FeedbackCollector(school) as inbox, FeedbackCollector(other_school) as other_inbox:
        enrolled = {
            key: (await school.register(mine, SEED_DATE, bsn=persons[key].bsn)).enrolment.enrolment_id
            for key in ("overlijdt", "emigreert", "jonger-dan-4", "geboortedatum-gecorrigeerd", "naam-gewijzigd")
        }
        await _no_bsn(school, mine, persons["zonder-bsn"], inbox)
        await _enrolled_elsewhere(school, mine, other, persons["elders-ingeschreven"], inbox, other_inbox)
        for enrolment_id in enrolled.values():
            await inbox.until(_has(enrolment_id, lambda f: f.trigger == rod_pb2.FEEDBACK_TRIGGER_SCHOOL_MESSAGE))
        _under_4_at_registration(_latest(inbox, enrolled["jonger-dan-4"]))
        _under_4_at_registration(_latest(inbox, enrolled["geboortedatum-gecorrigeerd"]))
        for key in ("overlijdt", "emigreert", "naam-gewijzigd"):
            assert _decisions(_latest(inbox, enrolled[key]))[COUNT_DATE][:2] == (True, ("SBX-FUNDED",))

        await _set_clock(sandbox, SEED_DATE + dt.timedelta(days=7))
        await _set_clock(sandbox, SEED_DATE + dt.timedelta(days=14))
        await _birth_date_corrected(sandbox, inbox, enrolled["geboortedatum-gecorrigeerd"])
        await _name_changed(sandbox, persons["naam-gewijzigd"], inbox, enrolled["naam-gewijzigd"])

        await _set_clock(sandbox, SEED_DATE + dt.timedelta(days=30))
        await _dies(inbox, enrolled["overlijdt"])
        await _emigrates(inbox, enrolled["emigreert"])

        await _set_clock(sandbox, SEED_DATE + dt.timedelta(days=120))
        await _returns(inbox, enrolled["emigreert"])
        await _under_4_after_the_count(inbox, enrolled["jonger-dan-4"])

    table = await brp.ListScenarioPersons(brp_pb2.ListScenarioPersonsRequest(), metadata=sandbox.metadata())
    sent = [m for p in table.persons for m in p.scheduled_messages]
    assert sent and all(m.outcome == brp_pb2.MESSAGE_OUTCOME_APPLIED for m in sent)


def _under_4_at_registration(feedback: rod_pb2.Feedback) -> None:
    assert _decisions(feedback)[COUNT_DATE][:2] == (False, ("SBX-PO-UNDER-4",))


async def _no_bsn(school: School, offering: Offering, person: brp_pb2.ScenarioPerson, inbox: FeedbackCollector) -> None:
    """zonder-bsn: registered by personal details, BRP finds nobody, ROD assigns an onderwijsnummer."""
    d = person.details
    details = rod_pb2.PupilDetails(
        given_names=d.given_names, surname=d.surname, birth_date=d.birth_date, sex=d.sex, address=d.address
    )
    answer = await school.register(offering, SEED_DATE, details=details)
    number = answer.assigned_onderwijsnummer
    assert is_valid_onderwijsnummer(number) and not answer.enrolment.pupil.bsn
    again = await school.rod.IdentifyPupil(rod_pb2.IdentifyPupilRequest(details=details), metadata=school.metadata)
    assert again.pupil.onderwijsnummer == number
    received = await inbox.until(_has(answer.enrolment.enrolment_id, lambda f: bool(f.funding)))
    own = [f for f in received if f.enrolment_id == answer.enrolment.enrolment_id][-1]
    assert own.pupil.onderwijsnummer == number


async def _enrolled_elsewhere(
    school: School,
    mine: Offering,
    other: Offering,
    person: brp_pb2.ScenarioPerson,
    inbox: FeedbackCollector,
    other_inbox: FeedbackCollector,
) -> None:
    """elders-ingeschreven: a second enrolment; both schools are told, the earlier one stays funded."""
    assert person.enrolled_elsewhere
    answer = await school.register(mine, SEED_DATE, bsn=person.bsn)
    assert answer.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL
    enrolment_id = answer.enrolment.enrolment_id
    received = await inbox.until(_has(enrolment_id, lambda f: bool(f.funding)))
    own = [f for f in received if f.enrolment_id == enrolment_id][-1]
    assert _decisions(own)[COUNT_DATE][:2] == (False, ("SBX-SECOND-ENROLMENT",))
    assert _signals(own)["SBX-DOUBLE-ENROLMENT"]["other_institution_code"] == other.institution_code
    told = await other_inbox.until(lambda r: any(f.trigger == rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT for f in r))
    theirs = [f for f in told if f.trigger == rod_pb2.FEEDBACK_TRIGGER_OTHER_ENROLMENT][-1]
    assert _decisions(theirs)[COUNT_DATE][:2] == (True, ("SBX-FUNDED",))
    assert _signals(theirs)["SBX-DOUBLE-ENROLMENT"]["other_institution_code"] == mine.institution_code


async def _birth_date_corrected(sandbox: SandboxHarness, inbox: FeedbackCollector, enrolment_id: str) -> None:
    """geboortedatum-gecorrigeerd: at S+14 the birth date moves a year back, so the count date is funded."""
    received = await inbox.until(_has(enrolment_id, lambda f: f.trigger == BRP))
    corrected = [f for f in received if f.enrolment_id == enrolment_id and f.trigger == BRP][-1]
    assert _decisions(corrected)[COUNT_DATE][:2] == (True, ("SBX-FUNDED",))
    # The school is told the corrected birth date (born the day after a 1 February, one year earlier).
    assert _signals(corrected)["SBX-PUPIL-DETAILS-CHANGED"] == {"birth_date": "2022-02-02"}


async def _name_changed(
    sandbox: SandboxHarness, person: brp_pb2.ScenarioPerson, inbox: FeedbackCollector, enrolment_id: str
) -> None:
    """naam-gewijzigd: BRP holds the new surname and the school is told so; funding is unchanged.

    Its message (S+7) came before the correction (S+14) on BRP's stream, which ROD follows in order.
    """
    brp = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    now = await brp.GetPerson(brp_pb2.GetPersonRequest(bsn=person.bsn), metadata=sandbox.metadata())
    assert now.surname == "Nieuwenaam"
    message_id = person.scheduled_messages[0].message_id
    received = await inbox.until(_has(enrolment_id, lambda f: f.trigger == BRP))
    [told] = [f for f in received if f.enrolment_id == enrolment_id and f.trigger == BRP]
    assert told.cause.id == message_id
    assert told.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL
    assert _signals(told)["SBX-PUPIL-DETAILS-CHANGED"] == {"surname": "Nieuwenaam"}
    assert _decisions(told)[COUNT_DATE][:2] == (True, ("SBX-FUNDED",))
    assert [f.enrolment_id for f in await school_feedback(sandbox, message_id)] == [enrolment_id]


async def school_feedback(sandbox: SandboxHarness, cause_id: str) -> list[rod_pb2.Feedback]:
    answer = await rod_pb2_grpc.RodServiceStub(sandbox.channel).ListFeedback(
        rod_pb2.ListFeedbackRequest(cause_id=cause_id), metadata=sandbox.metadata()
    )
    return list(answer.feedback)


async def _dies(inbox: FeedbackCollector, enrolment_id: str) -> None:
    """overlijdt: at S+30 the death, signal SBX-PUPIL-DECEASED, the count date not funded (SBX-DECEASED)."""
    died = SEED_DATE + dt.timedelta(days=30)
    received = await inbox.until(_has(enrolment_id, lambda f: f.trigger == BRP))
    feedback = [f for f in received if f.enrolment_id == enrolment_id and f.trigger == BRP][-1]
    assert feedback.outcome == rod_pb2.FEEDBACK_OUTCOME_APPROVED_WITH_SIGNAL
    assert _signals(feedback)["SBX-PUPIL-DECEASED"] == {"date": died.isoformat()}
    assert _decisions(feedback)[COUNT_DATE][:2] == (False, ("SBX-DECEASED",))


async def _emigrates(inbox: FeedbackCollector, enrolment_id: str) -> None:
    """emigreert, first half: at S+30 abroad, signal SBX-PUPIL-ABROAD, the count date not funded (SBX-ABROAD)."""
    left = SEED_DATE + dt.timedelta(days=30)
    received = await inbox.until(_has(enrolment_id, lambda f: f.trigger == BRP))
    feedback = [f for f in received if f.enrolment_id == enrolment_id and f.trigger == BRP][-1]
    assert _signals(feedback)["SBX-PUPIL-ABROAD"] == {"date": left.isoformat()}
    assert _decisions(feedback)[COUNT_DATE][:2] == (False, ("SBX-ABROAD",))


async def _returns(inbox: FeedbackCollector, enrolment_id: str) -> None:
    """emigreert, second half: back at S+120; the count date spent abroad stays unfunded, the next is funded."""
    back = SEED_DATE + dt.timedelta(days=120)

    def returned(f: rod_pb2.Feedback) -> bool:
        return f.trigger == BRP and _signals(f).get("SBX-PUPIL-ABROAD", {}).get("returned") == back.isoformat()

    await inbox.until(_has(enrolment_id, returned))
    latest = await inbox.until(
        _has(enrolment_id, lambda f: returned(f) and NEXT_COUNT_DATE in _decisions(f)), within=10.0
    )
    feedback = [f for f in latest if f.enrolment_id == enrolment_id and returned(f)][-1]
    decisions = _decisions(feedback)
    assert decisions[COUNT_DATE][:2] == (False, ("SBX-ABROAD",))
    assert decisions[NEXT_COUNT_DATE][:2] == (True, ("SBX-FUNDED",))


async def _under_4_after_the_count(inbox: FeedbackCollector, enrolment_id: str) -> None:
    """jonger-dan-4: past the correction deadline the count is final and unfunded; the next one is funded."""

    def final(f: rod_pb2.Feedback) -> bool:
        decisions = _decisions(f)
        return decisions.get(COUNT_DATE, (None, (), ""))[2] == "D" and NEXT_COUNT_DATE in decisions

    await inbox.until(_has(enrolment_id, final))
    feedback = [f for f in inbox.for_enrolment(enrolment_id) if final(f)][-1]
    assert feedback.trigger == rod_pb2.FEEDBACK_TRIGGER_COUNT_DATE
    assert _decisions(feedback)[COUNT_DATE] == (False, ("SBX-PO-UNDER-4",), "D")
    assert _decisions(feedback)[NEXT_COUNT_DATE][:2] == (True, ("SBX-FUNDED",))
