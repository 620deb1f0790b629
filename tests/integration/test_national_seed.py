"""The national seed over gRPC, small: BRP's persons in bulk, one primary enrolment each through ROD's bulk RPC.

Issue 11 item 5: `national_pupils` builds the national primary register (1,300,000 pupils at 6,700
schools in full); here 3,000 pupils at the small seed's primary schools, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import datetime as dt

import grpc
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
from services.common import identifiers as ids
from services.common.seeding import national_bsns
from tests.conftest import SandboxHarness
from tests.helpers.rio import refusal
from tests.integration.test_scenario_persons import _primary_offerings

PUPILS = 3_000
SEED_DATE = dt.date(2026, 11, 2)


async def _enrolments_by_school(sandbox: SandboxHarness, schools: list[str]) -> list[rod_pb2.Enrolment]:
    rod = rod_pb2_grpc.RodServiceStub(sandbox.channel)
    found: list[rod_pb2.Enrolment] = []
    for school in schools:
        token = ""
        while True:
            page = await rod.ListEnrolments(
                rod_pb2.ListEnrolmentsRequest(
                    institution_code=school, page=common_pb2.PageRequest(page_size=500, page_token=token)
                ),
                metadata=sandbox.metadata(),
            )
            found.extend(page.enrolments)
            token = page.page.next_page_token
            if not token:
                break
    return found


async def _feedback_count(sandbox: SandboxHarness, schools: list[str], wanted: int) -> set[str]:
    """The enrolments feedback has arrived for, read from the start until `wanted` or 20 s."""
    rod = rod_pb2_grpc.RodServiceStub(sandbox.channel)
    call = rod.StreamFeedback(rod_pb2.StreamFeedbackRequest(institution_codes=schools), metadata=sandbox.metadata())
    seen: set[str] = set()

    async def read() -> None:
        async for feedback in call:
            seen.add(feedback.enrolment_id)
            if len(seen) >= wanted:
                return

    try:
        await asyncio.wait_for(read(), timeout=20)
    finally:
        call.cancel()
    return seen


async def test_a_national_seed_enrols_every_pupil_once_with_a_decision_and_a_repeat_doubles_nothing(
    sandbox: SandboxHarness,
) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    moment = Timestamp()
    moment.FromDatetime(dt.datetime.combine(SEED_DATE, dt.time(10), tzinfo=dt.UTC))
    await admin.SetClock(sandbox_pb2.SetClockRequest(freeze_at=moment), metadata=sandbox.metadata())

    brp = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    bsns = national_bsns(PUPILS)
    request = sandbox_pb2.SeedSandboxRequest(
        size=sandbox_pb2.SEED_SIZE_SMALL, seed=5, synthetic_bsns=True, national_pupils=PUPILS
    )
    seeded = await admin.SeedSandbox(request, metadata=sandbox.metadata())
    assert seeded.created["national_persons"] == PUPILS
    assert seeded.created["national_enrolments"] == PUPILS

    # The pupils are BRP persons with synthetic (11-proof, outside the test range) BSNs, of primary age.
    for bsn in (bsns[0], bsns[PUPILS // 2], bsns[-1]):
        person = await brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn), metadata=sandbox.metadata())
        assert ids.is_valid_bsn(person.bsn) and not ids.is_test_bsn(person.bsn)

    schools = await _primary_schools(sandbox)
    assert {e.institution_code for e in await _one_each(sandbox, bsns[:20])} <= set(schools)
    enrolments = await _enrolments_by_school(sandbox, schools)
    national = [e for e in enrolments if e.pupil.bsn in set(bsns)]
    # Every pupil once, each with a funding decision, spread over every school.
    assert sorted(e.pupil.bsn for e in national) == sorted(bsns)
    assert all(e.funding for e in national)
    assert {e.institution_code for e in national} == set(schools)
    assert len(await _feedback_count(sandbox, schools, len(enrolments))) >= PUPILS

    # A repeated seed (another key) doubles nothing: the pupils and their enrolments are held already.
    again = await admin.SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(
            idempotency_key="again",
            size=sandbox_pb2.SEED_SIZE_SMALL,
            seed=5,
            synthetic_bsns=True,
            national_pupils=PUPILS,
        ),
        metadata=sandbox.metadata(),
    )
    assert again.created["national_persons"] == 0
    assert again.created["national_enrolments"] == PUPILS
    assert len(await _enrolments_by_school(sandbox, schools)) == len(enrolments)


async def _primary_schools(sandbox: SandboxHarness) -> list[str]:
    return [o.institution_code for o in await _primary_offerings(sandbox)]


async def _one_each(sandbox: SandboxHarness, bsns: list[str]) -> list[rod_pb2.Enrolment]:
    """Each pupil's enrolments, asked by pupil: exactly one each."""
    rod = rod_pb2_grpc.RodServiceStub(sandbox.channel)
    found: list[rod_pb2.Enrolment] = []
    for bsn in bsns:
        page = await rod.ListEnrolments(
            rod_pb2.ListEnrolmentsRequest(pupil=rod_pb2.PupilId(bsn=bsn)), metadata=sandbox.metadata()
        )
        assert len(page.enrolments) == 1
        found.extend(page.enrolments)
    return found


async def test_a_national_seed_without_the_synthetic_opt_in_is_refused_and_seeds_nothing(
    sandbox: SandboxHarness,
) -> None:
    admin = sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)
    # Without synthetic_bsns: refused before any register is touched (the test range holds about 2,700).
    status, reason, violations = await refusal(
        admin.SeedSandbox(
            sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=5, national_pupils=PUPILS),
            metadata=sandbox.metadata(),
        )
    )
    assert (status, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "SBX-NATIONAL-NEEDS-SYNTHETIC-BSNS")
    assert violations == [("synthetic_bsns", "SBX-NATIONAL-NEEDS-SYNTHETIC-BSNS")]
    providers = await rio_pb2_grpc.RioServiceStub(sandbox.channel).ListProviders(
        rio_pb2.ListProvidersRequest(), metadata=sandbox.metadata()
    )
    assert list(providers.providers) == []
    brp = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    bsns = national_bsns(PUPILS)
    for bsn in (bsns[0], bsns[-1]):
        missing = await refusal(brp.GetPerson(brp_pb2.GetPersonRequest(bsn=bsn), metadata=sandbox.metadata()))
        assert missing[0] == grpc.StatusCode.NOT_FOUND
