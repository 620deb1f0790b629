"""RIO's use cases with an in-process SandboxAdmin and a scratch SQLite file: no server, no gRPC."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from sqlmodel import Session, SQLModel, select

from services.common.caller import Caller
from services.common.database import Database, make_engine
from services.common.errors import RegistryError
from services.common.paging import Page
from services.common.wakeup import LogWakeup
from services.rio import codec, rules
from services.rio.peers import InProcessSandboxes
from services.rio.rules import Address, CodeSystem, Sector
from services.rio.service import (
    EndRecord,
    NewBoard,
    NewCourse,
    NewLocation,
    NewOffering,
    NewProvider,
    NewVersion,
    OfferingQuestion,
    ProvidersQuery,
    PurgeOrder,
    RioService,
    SeedOrder,
)
from services.rio.tables import RioChangeEntry

T = TypeVar("T")
SANDBOX = "sbx_unit"
TODAY = dt.date(2025, 10, 1)
ADMIN = Caller(SANDBOX)
B1, B2 = "100B001", "100B002"


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'rio.db'}")
    SQLModel.metadata.create_all(
        engine, tables=[t for n, t in SQLModel.metadata.tables.items() if n.startswith("rio_")]
    )
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def sandboxes() -> InProcessSandboxes:
    return InProcessSandboxes(today=TODAY)


@pytest.fixture
def service(database: Database, sandboxes: InProcessSandboxes) -> RioService:
    return RioService(database, sandboxes, codec, LogWakeup())


def writer(database: Database) -> Callable[[Callable[[Session], T]], asyncio.Future[T]]:
    """The simplest mutation path: one transaction, the work's result as the answer."""

    def write(work: Callable[[Session], T]) -> asyncio.Future[T]:
        return asyncio.ensure_future(database.run(work))

    return write


def log(database: Database) -> list[RioChangeEntry]:
    return database.transaction(lambda s: list(s.exec(select(RioChangeEntry)).all()))


async def a_school(service: RioService, database: Database) -> dict[str, str]:
    """Board 1 with provider 25BE offering BAO at its location; board 2 with a location of its own."""
    write = writer(database)
    for code in (B1, B2):
        await service.create_board(ADMIN, NewBoard(code, f"Stichting {code}", "", dt.date(2000, 1, 1)), write)
    await service.create_course(
        ADMIN, NewCourse("BAO", CodeSystem.PO, None, "Basisonderwijs", "PO-BAO", dt.date(2000, 8, 1), None), write
    )
    begin = dt.date(2020, 8, 1)
    provider = await service.create_provider(
        Caller(SANDBOX, board_code=B1), NewProvider("", "", "25BE", "OBS De Regenboog", Sector.PO, begin, None), write
    )
    l1 = await service.create_location(ADMIN, NewLocation("", B1, "Hoofdgebouw", Address(), begin, None), write)
    l2 = await service.create_location(ADMIN, NewLocation("", B2, "Elders", Address(), begin, None), write)
    offering = await service.create_offering(
        ADMIN, NewOffering(provider.provider_code, "BAO", l1.location_code, begin, None), write
    )
    return {
        "provider": provider.provider_code,
        "l1": l1.location_code,
        "l2": l2.location_code,
        "id": offering.offering_id,
    }


async def test_a_left_out_date_is_the_sandbox_clocks_today_and_a_given_one_asks_no_clock(
    service: RioService, database: Database, sandboxes: InProcessSandboxes
) -> None:
    codes = await a_school(service, database)
    assert sandboxes.clock_reads == 0
    renamed = await service.update_provider(
        ADMIN, NewVersion(codes["provider"], None, "IKC De Regenboog"), writer(database)
    )
    assert sandboxes.clock_reads == 1 and renamed.begin_date == TODAY and renamed.version == 2
    question = OfferingQuestion("25BE", "BAO", codes["l1"], dt.date(2021, 1, 1))
    check = await service.check_offering(ADMIN, question)
    assert check.decision.offered and sandboxes.clock_reads == 1


async def test_every_change_logs_one_entry_holding_the_record_after_it(service: RioService, database: Database) -> None:
    codes = await a_school(service, database)
    # Each new location also starts its board's use of it (onderwijslocatiegebruik): one entry each.
    kinds = [rules.RecordKind(e.record_kind) for e in log(database)]
    assert len(kinds) == 9 and kinds.count(rules.RecordKind.LOCATION_USE) == 2
    await service.end_offering(ADMIN, EndRecord(codes["id"], dt.date(2023, 7, 31)), writer(database))
    entries = log(database)
    assert len(entries) == 10
    last = codec.change(entries[-1])
    assert last.change_kind == rules.ChangeKind.ENDED and last.code == codes["id"]
    assert last.course_offering.validity.end_date.year == 2023


async def test_check_offering_decides_in_the_registers_order(service: RioService, database: Database) -> None:
    codes = await a_school(service, database)
    day = dt.date(2021, 1, 1)

    async def reason(institution: str, course: str, location: str) -> str:
        check = await service.check_offering(ADMIN, OfferingQuestion(institution, course, location, day))
        return check.decision.reason_code

    assert await reason("25BE", "BAO", "100X999") == rules.LOCATION_UNKNOWN
    assert await reason("25BE", "25001", codes["l1"]) == rules.COURSE_UNKNOWN
    assert await reason("25BE", "BAO", codes["l2"]) == rules.LOCATION_NOT_IN_USE
    assert await reason("99ZZ", "BAO", codes["l1"]) == rules.INSTITUTION_UNKNOWN
    assert await reason("25BE", "BAO", codes["l1"]) == ""


async def test_a_board_creates_and_changes_only_its_own_records(service: RioService, database: Database) -> None:
    codes = await a_school(service, database)
    other = Caller(SANDBOX, board_code=B2)
    attempts = [
        service.create_provider(other, NewProvider("", B1, "", "Overname", Sector.PO, TODAY, None), writer(database)),
        service.update_provider(other, NewVersion(codes["provider"], TODAY, "Overname"), writer(database)),
        service.end_location(other, EndRecord(codes["l1"], TODAY), writer(database)),
        service.create_board(other, NewBoard("", "Eigen", "", TODAY), writer(database)),
    ]
    for attempt in attempts:
        with pytest.raises(RegistryError) as refused:
            await attempt
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED and refused.value.reason == "AUT401"
    assert len(log(database)) == 9


async def test_an_offering_lists_every_unknown_fact_at_once(service: RioService, database: Database) -> None:
    codes = await a_school(service, database)
    with pytest.raises(RegistryError) as refused:
        await service.create_offering(
            ADMIN, NewOffering(codes["provider"], "25001", "100X999", TODAY, None), writer(database)
        )
    assert [(v.field, v.code) for v in refused.value.violations] == [
        ("location_code", rules.LOCATION_UNKNOWN),
        ("course_code", rules.COURSE_UNKNOWN),
    ]


async def test_pages_read_one_more_row_than_asked(service: RioService, database: Database) -> None:
    await a_school(service, database)
    listed = await service.list_providers(ADMIN, ProvidersQuery(None, "", "", 0, Page(size=1, after="")))
    assert len(listed.rows) == 1  # one provider: nothing more waiting
    answer = codec.providers(listed)
    assert answer.page.next_page_token == "" and answer.providers[0].institution_code == "25BE"


async def test_seed_and_purge_are_for_the_registers_only(service: RioService, database: Database) -> None:
    await a_school(service, database)
    for attempt in (
        service.seed_register(ADMIN, SeedOrder("small", 1), writer(database)),
        service.purge_sandbox(ADMIN, PurgeOrder(), writer(database)),
    ):
        with pytest.raises(RegistryError) as refused:
            await attempt
        assert refused.value.code == grpc.StatusCode.PERMISSION_DENIED
    internal = Caller(SANDBOX, internal=True)
    first = await service.seed_register(internal, SeedOrder("small", 1), writer(database))
    again = await service.seed_register(internal, SeedOrder("medium", 2), writer(database))
    assert again == first and first["boards"] > 0
    deleted = await service.purge_sandbox(internal, PurgeOrder(), writer(database))
    assert deleted == sum(first.values()) + 9  # the seeded records and the school's nine (two location uses)
    assert log(database) == []
