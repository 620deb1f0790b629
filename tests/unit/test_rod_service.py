"""ROD's use cases (services.rod.service) with in-process peers and a scratch SQLite database: no server."""

from __future__ import annotations

import dataclasses
import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from sqlalchemy import event

from services.common.caller import Caller
from services.common.database import Database, make_engine
from services.common.errors import RegistryError
from services.common.identifiers import test_bsns as official_test_bsns
from services.common.migrations import upgrade
from services.rod import rules, store
from services.rod.funding import Sector
from services.rod.rules import EnrolmentOutcome, Outcome, Trigger
from tests.helpers.rod_service import LocalCommit, RodUnit

START = dt.date(2027, 8, 15)
COUNT = dt.date(2027, 10, 1)
TEEN = dt.date(2014, 5, 5)
BSN, OTHER_BSN = "999990019", "999990020"


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    path: Path = tmp_path_factory.mktemp("rod") / "rod.db"
    engine = make_engine(f"sqlite:///{path}")
    upgrade("rod", engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def rod(database: Database) -> RodUnit:
    unit = RodUnit(database)
    unit.brp.add(BSN, TEEN)
    unit.offer("25BE")
    unit.offer("26BE")
    return unit


async def register(rod: RodUnit, command: rules.RegisterEnrolment, caller: Caller | None = None) -> EnrolmentOutcome:
    commit: LocalCommit[EnrolmentOutcome] = LocalCommit(rod.database)
    return await rod.service.register_enrolment(caller or rod.school(command.institution_code), command, commit)


def outbox(rod: RodUnit) -> list[rules.OutboxEntry]:
    return rod.database.transaction(
        lambda s: store.feedback_after(s, sandbox_id=rod.sandbox_id, institution_codes=[], after=0)
    )


def funded_on(outcome: EnrolmentOutcome, count_date: dt.date) -> bool:
    return any(d.funded for d in outcome.enrolment.decisions if d.count_date == count_date)


async def test_a_registration_is_funded_followed_in_brp_and_written_to_the_outbox(rod: RodUnit) -> None:
    answer = await register(rod, rod.registration("25BE", BSN, START))
    assert funded_on(answer, COUNT) and answer.outcome is Outcome.APPROVED
    assert (rod.sandbox_id, BSN) in rod.brp.followed
    [written] = outbox(rod)
    assert written.cursor == answer.feedback_cursor


async def test_a_second_school_is_not_funded_and_the_first_hears_of_it(rod: RodUnit) -> None:
    first = await register(rod, rod.registration("25BE", BSN, START))
    second = await register(rod, rod.registration("26BE", BSN, START + dt.timedelta(days=1)))
    assert funded_on(first, COUNT) and not funded_on(second, COUNT)
    assert [s.code for s in second.signals] == ["SBX-DOUBLE-ENROLMENT"]
    triggers = rod.database.transaction(
        lambda s: [
            store.list_feedback(
                s,
                sandbox_id=rod.sandbox_id,
                cause_id="",
                trigger=int(trigger),
                institution_code="25BE",
                enrolment_id="",
                after=0,
                limit=10,
            )
            for trigger in (Trigger.SCHOOL_MESSAGE, Trigger.OTHER_ENROLMENT)
        ]
    )
    assert [len(found) for found in triggers] == [1, 1]


async def test_an_unknown_person_is_refused_and_rejected_once_per_document(rod: RodUnit) -> None:
    command = rod.registration("25BE", OTHER_BSN, START)
    for _ in range(2):
        with pytest.raises(RegistryError) as refused:
            await register(rod, command)
        assert refused.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert [(v.field, v.code) for v in refused.value.violations] == [("pupil.bsn", "SBX-PERSON-UNKNOWN")]
    [rejected] = outbox(rod)
    assert rejected.cursor > 0


async def test_a_course_rio_does_not_offer_names_the_period_field(rod: RodUnit) -> None:
    with pytest.raises(RegistryError) as refused:
        await register(rod, rod.registration("25BE", BSN, START, location_code="999X999"))
    assert [(v.field, v.code) for v in refused.value.violations] == [("periods[0].location_code", "A01060")]


async def test_a_deceased_person_cannot_be_enrolled(rod: RodUnit) -> None:
    rod.brp.add(OTHER_BSN, TEEN, death_date=dt.date(2027, 8, 1))
    with pytest.raises(RegistryError) as refused:
        await register(rod, rod.registration("25BE", OTHER_BSN, START))
    assert [v.code for v in refused.value.violations] == ["SBX-PERSON-DECEASED"]


async def test_a_repeated_document_is_refused_as_a_duplicate(rod: RodUnit) -> None:
    command = rod.registration("25BE", BSN, START)
    await register(rod, command)
    with pytest.raises(RegistryError) as duplicate:
        await register(rod, command)
    assert duplicate.value.code == grpc.StatusCode.ALREADY_EXISTS and duplicate.value.reason == "SBX-DUPLICATE-DOCUMENT"


async def test_ending_needs_a_higher_sequence_and_ending_before_the_count_date_loses_funding(rod: RodUnit) -> None:
    registered = await register(rod, rod.registration("25BE", BSN, START))
    enrolment_id = registered.enrolment.enrolment_id
    school = rod.school("25BE")
    stale = rules.EndEnrolment("0b8f0c4e-5d6f-4a4e-8c53-2b2f8d9c4b10", enrolment_id, COUNT, 1)
    with pytest.raises(RegistryError) as refused:
        await rod.service.end_enrolment(school, stale, LocalCommit(rod.database))
    assert refused.value.reason == "SBX-SEQUENCE-NOT-HIGHER"
    early = rules.EndEnrolment("7d1c0e2a-8e57-4f43-9a0e-6b0d4c3f2a11", enrolment_id, COUNT - dt.timedelta(days=1), 2)
    ended: EnrolmentOutcome = await rod.service.end_enrolment(school, early, LocalCommit(rod.database))
    assert ended.enrolment.status is rules.EnrolmentStatus.ENDED and not funded_on(ended, COUNT)
    with pytest.raises(RegistryError) as foreign:
        await rod.service.get_enrolment(rod.school("26BE"), enrolment_id)
    assert foreign.value.code == grpc.StatusCode.PERMISSION_DENIED


async def test_the_follow_indication_ends_with_the_last_enrolment_and_reopens_with_a_new_one(rod: RodUnit) -> None:
    key, school = (rod.sandbox_id, BSN), rod.school("25BE")
    first = await register(rod, rod.registration("25BE", BSN, START))
    second = await register(rod, rod.registration("26BE", BSN, START))
    assert rod.brp.follow_ends[key] is None
    last_day = dt.date(2027, 12, 31)
    end = rules.EndEnrolment("3f0e5a52-1c1b-4d0a-9f3e-5e2f0a6b7c01", first.enrolment.enrolment_id, last_day, 2)
    await rod.service.end_enrolment(school, end, LocalCommit(rod.database))
    assert rod.brp.follow_ends[key] is None  # the other school still holds the pupil
    delete = rules.DeleteEnrolment("3f0e5a52-1c1b-4d0a-9f3e-5e2f0a6b7c02", second.enrolment.enrolment_id)
    await rod.service.delete_enrolment(rod.school("26BE"), delete, LocalCommit(rod.database))
    assert rod.brp.follow_ends[key] == last_day + dt.timedelta(days=1)
    ended = dataclasses.replace(
        rod.registration("26BE", BSN, START),
        periods=(rules.PeriodShape(START, dt.date(2028, 7, 31), "100X001", "2101", 0),),
    )
    await register(rod, ended)
    assert rod.brp.follow_ends[key] == dt.date(2028, 8, 1)
    await register(rod, rod.registration("25BE", BSN, START))
    assert rod.brp.follow_ends[key] is None


async def test_the_same_pupil_without_bsn_gets_one_onderwijsnummer(rod: RodUnit) -> None:
    details = rules.PupilDetails("Fatima", "", "El Amrani", dt.date(2022, 3, 1), 0, "1012AB", 7, "")
    command = rules.IdentifyPupil(details=details)
    first: rules.IdentifiedPupil = await rod.service.identify_pupil(rod.admin, command, LocalCommit(rod.database))
    again: rules.IdentifiedPupil = await rod.service.identify_pupil(
        rod.admin,
        rules.IdentifyPupil(
            details=rules.PupilDetails("fatima", "", "el  amrani", details.birth_date, 0, "1012 ab", 7, "")
        ),
        LocalCommit(rod.database),
    )
    assert first.newly_assigned and not again.newly_assigned and again.pupil_number == first.pupil_number


async def test_an_acknowledgement_beyond_the_newest_feedback_is_refused(rod: RodUnit) -> None:
    answer = await register(rod, rod.registration("25BE", BSN, START))
    school = rod.school("25BE")
    with pytest.raises(RegistryError) as beyond:
        await rod.service.acknowledge_feedback(
            school, rules.AcknowledgeFeedback("package", answer.feedback_cursor + 1), LocalCommit(rod.database)
        )
    assert beyond.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert [v.field for v in beyond.value.violations] == ["cursor"]
    acknowledged: int = await rod.service.acknowledge_feedback(
        school, rules.AcknowledgeFeedback("package", answer.feedback_cursor), LocalCommit(rod.database)
    )
    assert acknowledged == answer.feedback_cursor


async def test_only_an_internal_caller_purges(rod: RodUnit) -> None:
    await register(rod, rod.registration("25BE", BSN, START))
    with pytest.raises(RegistryError) as vendor:
        await rod.service.purge(rod.admin, LocalCommit(rod.database))
    assert vendor.value.code == grpc.StatusCode.PERMISSION_DENIED
    deleted: int = await rod.service.purge(Caller(rod.sandbox_id, internal=True), LocalCommit(rod.database))
    assert deleted > 0 and not outbox(rod)


async def test_re_evaluating_pupils_at_hundreds_of_schools_reads_their_files_in_one_go(tmp_path: Path) -> None:
    # A BRP batch re-evaluates up to 500 pupils: with each at a school and location of its own, asking RIO's
    # ends of every location with every school made 40,000 codes here, past SQLite's default limit of bound
    # variables (32,766; Debian's build allows 250,000, so the test sets the default).
    engine = make_engine(f"sqlite:///{tmp_path / 'rod.db'}")
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766))
    upgrade("rod", engine)
    rod = RodUnit(Database(engine))
    schools = [(f"{n // 100:02d}{chr(65 + n // 26 % 26)}{chr(65 + n % 26)}", f"{100 + n:03d}X001") for n in range(200)]
    pupils = list(official_test_bsns())[10 : 10 + len(schools)]
    for (school, location), bsn in zip(schools, pupils, strict=True):
        rod.rio.offer(school, location, "2101", Sector.VO)
        rod.brp.add(bsn, TEEN)
        await register(rod, rod.registration(school, bsn, START, location_code=location))
    files = rod.database.transaction(lambda s: store.pupil_files(s, sandbox_id=rod.sandbox_id, pupil_numbers=pupils))
    assert sorted(files) == sorted(pupils)
    assert all(len(files[bsn].enrolments) == 1 for bsn in pupils)
    engine.dispose()
