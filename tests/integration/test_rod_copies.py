"""ROD's own copies of what it asks its peers (the sandbox clock, BRP persons, RIO offerings): the very next
decision after a peer's change uses the change, on SQLite and PostgreSQL (issue 11, item 3)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator

import grpc
import pytest
from sqlalchemy import event

from services._gen.registry.v1 import common_pb2, rod_pb2
from services.common import telemetry
from services.common.errors import read_details
from services.rod.copies import CopiedBrp, PersonCopy
from tests.conftest import SandboxHarness, serve_sandbox
from tests.helpers.rod_world import Offering, Rod, period, rod_in

TODAY = dt.datetime(2027, 9, 1, 10, 0, tzinfo=dt.UTC)
START = dt.date(2027, 8, 15)
TEEN = dt.date(2014, 5, 5)
# A statement that writes one of BRP's tables (SQLite's write lock is a no-op UPDATE of one).
BRP_WRITE = re.compile(r"\s*(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+brp_", re.IGNORECASE)
# Registrations may begin at most a year after the sandbox's today (rules.MAX_YEARS_AHEAD).
NEXT_YEAR = dt.date(2028, 8, 15)


@pytest.fixture
async def sandbox(database_url: str) -> AsyncIterator[SandboxHarness]:
    """The sandbox with ROD's copies kept on PostgreSQL too (RIO and BRP are one process each here)."""
    async with serve_sandbox(database_url, rod_peer_copies=True) as harness:
        yield harness


@pytest.fixture
async def rod(sandbox: SandboxHarness) -> Rod:
    return await rod_in(sandbox, TODAY)


def person_copy(rod: Rod) -> PersonCopy:
    copied = rod.running.component("rod").extra["servicer"].service.peers.brp
    assert isinstance(copied, CopiedBrp)
    return copied.copy


def brp_calls() -> int:
    """BRP calls ROD made in process (registry_in_process_calls), its change stream aside."""
    return int(
        sum(
            sample.value
            for metric in telemetry.IN_PROCESS_CALLS.collect()
            for sample in metric.samples
            if sample.name.endswith("_total")
            and sample.labels["method"].startswith("/registry.v1.BrpService/")
            and not sample.labels["method"].endswith("/StreamPersonChanges")
        )
    )


async def test_the_registration_right_after_a_clock_move_uses_the_new_date(rod: Rod) -> None:
    offering = await rod.world.offering(common_pb2.SECTOR_VO)
    school = rod.school(offering)
    pupils = [await rod.world.person(TEEN) for _ in range(6)]
    # Back and forth: each move is followed at once by a registration that only the new date allows or refuses.
    for round_, bsn in enumerate(pupils):
        late = round_ % 2 == 1
        await rod.set_clock(dt.datetime(2027 if late else 2026, 9, 1, 10, tzinfo=dt.UTC))
        if late:
            answer = await school.register(offering, NEXT_YEAR, bsn=bsn)
            assert answer.enrolment.enrolment_id
            continue
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await school.register(offering, NEXT_YEAR, bsn=bsn)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        _, violations = read_details(refused.value)
        assert "2026-09-01" in violations[0].description


async def test_the_registration_right_after_rio_ends_an_offering_is_refused(rod: Rod) -> None:
    for _ in range(3):
        offering = await rod.world.offering(common_pb2.SECTOR_VO)
        school = rod.school(offering)
        first, second = await rod.world.person(TEEN), await rod.world.person(TEEN)
        # The first registration leaves RIO's answer in ROD's copy; the end must reach the very next one.
        await school.register(offering, START, bsn=first)
        await rod.world.end_offering(offering, START - dt.timedelta(days=1))
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await school.register(offering, START, bsn=second)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        _, violations = read_details(refused.value)
        assert violations[0].field.startswith("periods[0]")


async def test_a_pupil_rod_already_follows_costs_brp_no_write(rod: Rod) -> None:
    first, second = await rod.world.offering(common_pb2.SECTOR_VO), await rod.world.offering(common_pb2.SECTOR_VO)
    bsn = await rod.world.person(TEEN)
    writes: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if BRP_WRITE.match(statement):
            writes.append(statement)

    engine = rod.running.database.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        await rod.school(first).register(first, START, bsn=bsn)
        assert writes, "the first registration sets ROD's follow indication in BRP"
        writes.clear()
        answer = await rod.school(second).register(second, START, bsn=bsn)
        assert writes == []
    finally:
        event.remove(engine, "before_cursor_execute", record)
    # BRP's facts still decide: the pupil is known and alive, so the second school is answered as always.
    assert answer.enrolment.enrolment_id


async def test_the_registration_right_after_a_brp_change_sees_the_change(rod: Rod) -> None:
    for _ in range(5):
        first, second, third = [await rod.world.offering(common_pb2.SECTOR_VO) for _ in range(3)]
        bsn = await rod.world.person(TEEN)
        # The first registration follows the pupil and leaves BRP's answer in ROD's copy; the second uses it.
        await rod.school(first).register(first, START, bsn=bsn)
        asked = brp_calls()
        await rod.school(second).register(second, START, bsn=bsn)
        assert brp_calls() == asked, "a pupil ROD follows is answered from its copy"
        # BRP's ingestion answers once the death was handed to ROD's stream: the very next registration sees it.
        died = START - dt.timedelta(days=1)
        await rod.world.die(bsn, died)
        # Seen from inside, at the moment BRP answered (no race with the next call): the copy holds the death.
        kept = person_copy(rod).get((rod.sandbox_id, bsn))
        assert kept is not None and kept.death_date == died
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await rod.school(third).register(third, START, bsn=bsn)
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        reason, violations = read_details(refused.value)
        assert reason == "SBX-PERSON-DECEASED" and [v.field for v in violations] == ["pupil.bsn"]


def _item(offering: Offering, bsn: str) -> rod_pb2.RegisterEnrolmentRequest:
    request = rod_pb2.RegisterEnrolmentRequest(
        document_id=str(uuid.uuid4()), institution_code=offering.institution_code, sequence=1
    )
    request.periods.append(period(offering, START))
    request.pupil.bsn = bsn
    return request


async def test_registrations_of_followed_pupils_call_brp_not_at_all(rod: Rod) -> None:
    first, second, third = [await rod.world.offering(common_pb2.SECTOR_VO) for _ in range(3)]
    pupils = [await rod.world.person(TEEN) for _ in range(3)]
    before = brp_calls()
    for bsn in pupils:
        await rod.school(first).register(first, START, bsn=bsn)
    assert brp_calls() > before, "a pupil new to ROD is followed in BRP"
    # A change BRP applies to a followed pupil replaces the copy's facts as it arrives: still no call after it.
    await rod.world.move_within(pupils[0], START)
    asked = brp_calls()
    answer = await rod.school(second).register(second, START, bsn=pupils[0])
    assert answer.enrolment.enrolment_id
    school = rod.school(third)
    bulk = await school.rod.RegisterEnrolments(
        rod_pb2.RegisterEnrolmentsRequest(enrolments=[_item(third, bsn) for bsn in pupils]), metadata=school.metadata
    )
    assert bulk.accepted == len(pupils)
    assert brp_calls() == asked
