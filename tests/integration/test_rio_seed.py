"""RIO's seed over real gRPC on SQLite and PostgreSQL: sizes, determinism, once per sandbox, real codes to use."""

from __future__ import annotations

from typing import Any

from services._gen.registry.v1 import common_pb2, rio_pb2, rio_pb2_grpc, sandbox_pb2, sandbox_pb2_grpc
from services.common.seeding import PROFILES
from services.rio.seed import CATALOGUE
from tests.conftest import SandboxHarness
from tests.helpers.rio import all_changes, d, every_page, internal, rio

TODAY = d(2025, 10, 1)


async def all_providers(stub: rio_pb2_grpc.RioServiceStub, metadata: object, **filters: Any) -> list[rio_pb2.Provider]:
    async def fetch(page: common_pb2.PageRequest) -> rio_pb2.ListProvidersResponse:
        request = rio_pb2.ListProvidersRequest(reference_date=TODAY, page=page, **filters)
        return await stub.ListProviders(request, metadata=metadata)

    return await every_page(fetch, "providers")


async def test_small_seed_is_national_shaped_once_per_sandbox_and_its_codes_answer_check_offering(
    sandbox: SandboxHarness,
) -> None:
    stub, md = rio(sandbox), sandbox.metadata()
    profile = PROFILES["small"]
    first = await stub.SeedRegister(
        common_pb2.SeedRegisterRequest(idempotency_key="s1", size="small", seed=7), metadata=internal(sandbox)
    )
    assert first.created["providers"] == profile.schools
    assert first.created["courses"] == len(CATALOGUE)
    assert first.created["boards"] >= profile.primary_boards
    # Every location is used by a board (onderwijslocatiegebruik); a few were another board's before.
    assert first.created["location_uses"] >= first.created["locations"]
    log_size = len(await all_changes(stub, md))
    assert log_size == sum(first.created.values())

    again = await stub.SeedRegister(
        common_pb2.SeedRegisterRequest(idempotency_key="s2", size="medium", seed=8), metadata=internal(sandbox)
    )
    assert again == first
    assert len(await all_changes(stub, md)) == log_size

    providers = await all_providers(stub, md)
    assert len(providers) == profile.schools
    by_sector = {sector: sum(p.sector == sector for p in providers) for sector in (1, 2, 3, 4)}
    assert by_sector == {
        1: profile.primary_schools,
        2: profile.secondary_schools,
        3: profile.mbo_institutions,
        4: profile.ho_institutions,
    }
    assert len({p.institution_code for p in providers}) == len(providers)

    # Every seeded provider's current offerings check out on that date; a client picks real codes this way.
    for provider in providers:
        offerings = await stub.ListCourseOfferings(
            rio_pb2.ListCourseOfferingsRequest(reference_date=TODAY, provider_code=provider.provider_code), metadata=md
        )
        assert offerings.offerings, provider.name
        offering = offerings.offerings[0]
        answer = await stub.CheckOffering(
            rio_pb2.CheckOfferingRequest(
                institution_code=provider.institution_code,
                course_code=offering.course_code,
                location_code=offering.location_code,
                reference_date=TODAY,
            ),
            metadata=md,
        )
        assert answer.offered and answer.offering.offering_id == offering.offering_id

    location = await stub.GetLocation(
        rio_pb2.GetRecordRequest(code=offering.location_code, reference_date=TODAY), metadata=md
    )
    assert len(location.address.postcode) == 6 and location.address.city and location.address.country_code == "NL"


async def test_the_same_seed_number_gives_the_same_register_and_a_purge_allows_a_new_seed(
    sandbox: SandboxHarness,
) -> None:
    stub, md = rio(sandbox), sandbox.metadata()
    other = await sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel).CreateSandbox(
        sandbox_pb2.CreateSandboxRequest(name="twin")
    )
    twin = (("x-sandbox-key", other.sandbox_key),)
    for sandbox_id in (sandbox.sandbox_id, other.sandbox.sandbox_id):
        await stub.SeedRegister(
            common_pb2.SeedRegisterRequest(size="small", seed=42), metadata=internal(sandbox, sandbox_id)
        )
    mine, theirs = await all_providers(stub, md), await all_providers(stub, twin)
    assert [(p.provider_code, p.institution_code, p.name) for p in mine] == [
        (p.provider_code, p.institution_code, p.name) for p in theirs
    ]

    purged = await stub.PurgeSandbox(
        common_pb2.PurgeSandboxRequest(idempotency_key="reset-1"), metadata=internal(sandbox)
    )
    assert purged.deleted > len(mine)
    assert await all_providers(stub, md) == []
    assert len(await all_providers(stub, twin)) == len(theirs)  # another vendor's sandbox is untouched
    reseeded = await stub.SeedRegister(
        common_pb2.SeedRegisterRequest(size="small", seed=43), metadata=internal(sandbox)
    )
    assert reseeded.created["providers"] == PROFILES["small"].schools
    assert [p.name for p in await all_providers(stub, md)] != [p.name for p in mine]


async def test_a_seed_numbers_its_codes_after_records_the_sandbox_already_holds(sandbox: SandboxHarness) -> None:
    stub, md = rio(sandbox), sandbox.metadata()
    await stub.CreateBoard(
        rio_pb2.CreateBoardRequest(board_code="100B001", name="Eigen", begin_date=d(2000, 1, 1)), metadata=md
    )
    created = await stub.SeedRegister(common_pb2.SeedRegisterRequest(size="small", seed=1), metadata=internal(sandbox))
    boards = await stub.ListBoards(rio_pb2.ListBoardsRequest(page=common_pb2.PageRequest(page_size=500)), metadata=md)
    assert len(boards.boards) == created.created["boards"] + 1
    assert boards.boards[1].board_code == "100B002"


async def test_medium_seed_loads_and_answers(sandbox: SandboxHarness) -> None:
    stub, md = rio(sandbox), sandbox.metadata()
    created = await stub.SeedRegister(common_pb2.SeedRegisterRequest(size="medium", seed=1), metadata=internal(sandbox))
    assert created.created["providers"] == PROFILES["medium"].schools
    primary = await all_providers(stub, md, sector=common_pb2.SECTOR_PO)
    assert len(primary) == PROFILES["medium"].primary_schools

    # The changes feed answers at most 500 a page and resumes from its cursor without gaps or repeats.
    first = await stub.ListChanges(rio_pb2.ListChangesRequest(), metadata=md)
    assert len(first.changes) == 500 and first.has_more and first.next_cursor == first.changes[-1].cursor
    feed = await all_changes(stub, md)
    assert len(feed) == sum(created.created.values()) and feed[:500] == list(first.changes)
    assert [c.cursor for c in feed] == sorted({c.cursor for c in feed})
