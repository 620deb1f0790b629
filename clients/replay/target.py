"""The sandbox a replay talks to, through the public API only: a fresh seeded sandbox, its schools and persons."""

from __future__ import annotations

import datetime as dt
import hashlib
import random
from collections.abc import Sequence

import grpc

from clients.replay.traffic import School, school_year_start
from services._gen.registry.v1 import (
    brp_pb2_grpc,
    common_pb2,
    rio_pb2,
    rio_pb2_grpc,
    sandbox_pb2,
    sandbox_pb2_grpc,
)
from services.brp_sync.rules import PersonState
from services.brp_sync.simulator import read_persons
from services.common.caller import SANDBOX_KEY
from services.common.clock import REGISTER_TIMEZONE
from services.common.dates import from_proto_date, to_proto_date

SEED_SIZES: dict[str, sandbox_pb2.SeedSize.ValueType] = {
    "small": sandbox_pb2.SEED_SIZE_SMALL,
    "medium": sandbox_pb2.SEED_SIZE_MEDIUM,
    "full": sandbox_pb2.SEED_SIZE_FULL,
}
SECTOR_NAMES = {
    common_pb2.SECTOR_PO: "po",
    common_pb2.SECTOR_VO: "vo",
    common_pb2.SECTOR_MBO: "mbo",
    common_pb2.SECTOR_HO: "ho",
}
# The sandbox clock is set to this hour of the replayed day before seeding: the seed's ages and the
# funding decisions depend on "today", so a recording and its runs must see the same date.
CLOCK_HOUR = 7


def metadata(sandbox_key: str) -> tuple[tuple[str, str], ...]:
    return ((SANDBOX_KEY, sandbox_key),)


async def fresh_sandbox(
    channel: grpc.aio.Channel,
    *,
    date: dt.date,
    seed_size: str,
    register_seed: int,
    name: str,
    synthetic_bsns: bool = False,
) -> tuple[str, str]:
    """Creates a sandbox, sets its clock to the day and seeds it; returns (sandbox_id, key).

    Every run gets a sandbox of its own: a replayed day's document ids and BRP sequence numbers can be
    applied once only, and counts must start from nothing.
    """
    if seed_size not in SEED_SIZES:
        raise ValueError(f"unknown seed size {seed_size!r}; choose one of {', '.join(SEED_SIZES)}")
    admin = sandbox_pb2_grpc.SandboxAdminStub(channel)
    created = await admin.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name=name))
    key = created.sandbox_key
    moment = dt.datetime.combine(date, dt.time(CLOCK_HOUR), tzinfo=REGISTER_TIMEZONE)
    clock = sandbox_pb2.SetClockRequest(idempotency_key=f"replay-clock-{date}")
    clock.travel_to.FromDatetime(moment.astimezone(dt.UTC))
    await admin.SetClock(clock, metadata=metadata(key))
    await admin.SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(
            idempotency_key="replay-seed",
            size=SEED_SIZES[seed_size],
            seed=register_seed,
            synthetic_bsns=synthetic_bsns,
        ),
        metadata=metadata(key),
        timeout=600,
    )
    return created.sandbox.sandbox_id, key


async def sandbox_today(channel: grpc.aio.Channel, sandbox_key: str) -> dt.date:
    clock = await sandbox_pb2_grpc.SandboxAdminStub(channel).GetClock(
        sandbox_pb2.GetClockRequest(), metadata=metadata(sandbox_key)
    )
    today = from_proto_date(clock.today)
    assert today is not None
    return today


async def read_world(
    channel: grpc.aio.Channel, sandbox_key: str, date: dt.date
) -> tuple[list[PersonState], list[School]]:
    """Every person (BrpService.ListPersons) and every school with the offerings valid all through the
    traffic (RioService.ListProviders, ListCourseOfferings), in a stable order."""
    persons = await read_persons(brp_pb2_grpc.BrpServiceStub(channel), metadata(sandbox_key))
    persons.sort(key=lambda p: p.bsn)
    rio = rio_pb2_grpc.RioServiceStub(channel)
    # Setup enrolments begin at the start of the previous school year: offerings must hold from then on.
    this_year = school_year_start(date)
    since = dt.date(this_year.year - 1, this_year.month, this_year.day)
    providers: list[rio_pb2.Provider] = []
    token = ""
    while True:
        page = await rio.ListProviders(
            rio_pb2.ListProvidersRequest(
                reference_date=to_proto_date(since), page=common_pb2.PageRequest(page_size=500, page_token=token)
            ),
            metadata=metadata(sandbox_key),
        )
        providers.extend(page.providers)
        token = page.page.next_page_token
        if not token:
            break
    offerings: dict[str, list[tuple[str, str]]] = {}
    token = ""
    while True:
        offered = await rio.ListCourseOfferings(
            rio_pb2.ListCourseOfferingsRequest(
                reference_date=to_proto_date(since), page=common_pb2.PageRequest(page_size=500, page_token=token)
            ),
            metadata=metadata(sandbox_key),
        )
        for offering in offered.offerings:
            end = from_proto_date(offering.validity.end_date) if offering.validity.HasField("end_date") else None
            if end is None or end > date + dt.timedelta(days=400):
                offerings.setdefault(offering.provider_code, []).append((offering.location_code, offering.course_code))
        token = offered.page.next_page_token
        if not token:
            break
    schools = []
    for provider in providers:
        found = offerings.get(provider.provider_code)
        sector = SECTOR_NAMES.get(provider.sector)
        end = from_proto_date(provider.validity.end_date) if provider.validity.HasField("end_date") else None
        if found and sector and (end is None or end > date + dt.timedelta(days=400)):
            schools.append(School(provider.institution_code, sector, tuple(sorted(set(found)))))
    schools.sort(key=lambda s: s.institution_code)
    return persons, schools


def choose_schools(schools: Sequence[School], count: int, seed: int) -> list[School]:
    """`count` schools, every sector present when possible, the rest in the sandbox's own sector mix."""
    if count < 1:
        raise ValueError("--schools must be at least 1")
    if count > len(schools):
        raise ValueError(f"--schools {count}: the sandbox has only {len(schools)} schools with offerings")
    rng = random.Random(seed)
    by_sector: dict[str, list[School]] = {}
    for school in schools:
        by_sector.setdefault(school.sector, []).append(school)
    chosen: list[School] = []
    for sector in sorted(by_sector):
        if len(chosen) < count:
            chosen.append(rng.choice(by_sector[sector]))
    rest = [s for s in schools if s not in chosen]
    chosen.extend(rng.sample(rest, count - len(chosen)))
    return sorted(chosen, key=lambda s: s.institution_code)


def fingerprint(persons: Sequence[PersonState], schools: Sequence[School]) -> str:
    """A hash of what the recording depends on: persons (BSN, birth date, last sequence) and schools."""
    digest = hashlib.sha256()
    for person in sorted(persons, key=lambda p: p.bsn):
        digest.update(f"{person.bsn}|{person.birth_date}|{person.last_sequence}|{person.is_resident}\n".encode())
    for school in sorted(schools, key=lambda s: s.institution_code):
        digest.update(f"{school.institution_code}|{school.sector}|{school.offerings}\n".encode())
    return digest.hexdigest()[:16]
