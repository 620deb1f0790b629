"""Sandbox admin over real gRPC on SQLite and PostgreSQL: keys, isolation, idempotency, clock, migrations."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import create_engine, inspect

from services._gen.registry.v1 import sandbox_pb2, sandbox_pb2_grpc
from services.common.caller import SANDBOX_KEY
from services.common.errors import read_details
from services.common.settings import Settings
from tests.conftest import SandboxHarness


def _stub(sandbox: SandboxHarness) -> sandbox_pb2_grpc.SandboxAdminStub:
    return sandbox_pb2_grpc.SandboxAdminStub(sandbox.channel)


async def test_a_key_names_its_own_sandbox(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    other = await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="other vendor"))
    mine = await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=sandbox.metadata())
    theirs = await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, other.sandbox_key),))
    assert mine.sandbox_id == sandbox.sandbox_id
    assert theirs.sandbox_id == other.sandbox.sandbox_id != mine.sandbox_id
    assert theirs.name == "other vendor"


async def test_missing_or_unknown_key_is_unauthenticated_with_a_reason(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await stub.GetSandbox(sandbox_pb2.GetSandboxRequest())
    assert missing.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert SANDBOX_KEY in (missing.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, "sk_test_nope"),))
    assert unknown.value.code() == grpc.StatusCode.UNAUTHENTICATED
    reason, _ = read_details(unknown.value)
    assert reason == "AUT401"


async def test_creating_twice_with_one_idempotency_key_creates_one_sandbox(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    request = sandbox_pb2.CreateSandboxRequest(idempotency_key="create-1", name="acme")
    first = await stub.CreateSandbox(request)
    second = await stub.CreateSandbox(request)
    assert first.sandbox.sandbox_id == second.sandbox.sandbox_id
    # The key is stored only as a hash: shown once, never in a replay.
    assert first.sandbox_key.startswith("sk_test_") and second.sandbox_key == ""
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(idempotency_key="create-1", name="other"))
    assert reused.value.code() == grpc.StatusCode.ALREADY_EXISTS
    _, violations = read_details(reused.value)
    assert [v.field for v in violations] == ["idempotency_key"]


def _ts(value: dt.datetime) -> Timestamp:
    ts = Timestamp()
    ts.FromDatetime(value)
    return ts


async def test_clock_travel_freeze_and_reset(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    md = sandbox.metadata()
    count_date = dt.datetime(2027, 10, 1, 9, 0, tzinfo=dt.UTC)
    frozen = await stub.SetClock(sandbox_pb2.SetClockRequest(freeze_at=_ts(count_date)), metadata=md)
    assert frozen.frozen and (frozen.today.year, frozen.today.month, frozen.today.day) == (2027, 10, 1)
    again = await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=md)
    assert again.now == frozen.now

    travelled = await stub.SetClock(sandbox_pb2.SetClockRequest(travel_to=_ts(count_date)), metadata=md)
    assert not travelled.frozen
    assert abs(travelled.now.ToDatetime(tzinfo=dt.UTC) - count_date) < dt.timedelta(seconds=5)

    real = await stub.SetClock(sandbox_pb2.SetClockRequest(reset_to_real_time=True), metadata=md)
    assert abs(real.now.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)

    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.SetClock(sandbox_pb2.SetClockRequest(), metadata=md)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_one_sandbox_clock_does_not_move_another(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    other = await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="other"))
    await stub.SetClock(
        sandbox_pb2.SetClockRequest(freeze_at=_ts(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))), metadata=sandbox.metadata()
    )
    theirs = await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=((SANDBOX_KEY, other.sandbox_key),))
    assert theirs.today.year == dt.datetime.now(dt.UTC).year and not theirs.frozen


async def test_every_service_migrated_its_own_tables_with_its_own_history(sandbox: SandboxHarness) -> None:
    url = Settings(database_url=str(sandbox.running.database.engine.url.render_as_string(hide_password=False)))
    engine = create_engine(url.database_url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    for service in ("sandbox", "rio", "rod", "brp_sync"):
        assert f"alembic_version_{service}" in tables
        assert f"{service}_idempotent_response" in tables


async def test_sandbox_survives_a_restart_on_the_same_database(database_url: str) -> None:
    from services.bootstrap import ALL_SERVICES, build

    settings = Settings(database_url=database_url, port=0)
    key = ""
    for round_ in range(2):
        running = build(ALL_SERVICES, settings)
        await running.server.start()
        async with grpc.aio.insecure_channel(running.server.address) as channel:
            stub = sandbox_pb2_grpc.SandboxAdminStub(channel)
            if round_ == 0:
                key = (await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="durable"))).sandbox_key
            found = await stub.GetSandbox(sandbox_pb2.GetSandboxRequest(), metadata=((SANDBOX_KEY, key),))
            assert found.name == "durable"
        await running.server.stop(0)
        await running.peers.close()
        running.database.engine.dispose()


async def test_seed_then_reset_empties_every_register_of_that_sandbox_only(sandbox: SandboxHarness) -> None:
    from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc, rio_pb2, rio_pb2_grpc

    stub = _stub(sandbox)
    rio = rio_pb2_grpc.RioServiceStub(sandbox.channel)
    brp = brp_pb2_grpc.BrpServiceStub(sandbox.channel)
    other = await stub.CreateSandbox(sandbox_pb2.CreateSandboxRequest(name="other"))
    theirs = ((SANDBOX_KEY, other.sandbox_key),)
    seed = sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=5)
    mine = await stub.SeedSandbox(seed, metadata=sandbox.metadata())
    await stub.SeedSandbox(seed, metadata=theirs)
    assert mine.created["providers"] > 0 and mine.created["persons"] > 0
    await stub.SetClock(
        sandbox_pb2.SetClockRequest(freeze_at=_ts(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))), metadata=sandbox.metadata()
    )

    reset = await stub.ResetSandbox(sandbox_pb2.ResetSandboxRequest(), metadata=sandbox.metadata())

    assert not reset.clock.frozen
    assert not (await rio.ListBoards(rio_pb2.ListBoardsRequest(), metadata=sandbox.metadata())).boards
    assert not (await brp.ListPersons(brp_pb2.ListPersonsRequest(), metadata=sandbox.metadata())).persons
    assert (await rio.ListBoards(rio_pb2.ListBoardsRequest(), metadata=theirs)).boards
    assert (await brp.ListPersons(brp_pb2.ListPersonsRequest(), metadata=theirs)).persons
    assert not (
        await brp.ListScenarioPersons(brp_pb2.ListScenarioPersonsRequest(), metadata=sandbox.metadata())
    ).HasField("seed_date")
    # The key still works, and the sandbox can be seeded afresh, its scenario persons too.
    again = await stub.SeedSandbox(seed, metadata=sandbox.metadata())
    assert again.created["providers"] == mine.created["providers"]
    assert again.created["scenario_persons"] == 6 and again.created["scenario_enrolments"] == 1


async def test_seed_size_and_number_reach_every_register(sandbox: SandboxHarness) -> None:
    """The registers seed what SeedSandbox asked for (they once got an empty request: small, seed 0)."""
    from services._gen.registry.v1 import brp_pb2, brp_pb2_grpc
    from services.brp_sync import seeding

    stub = _stub(sandbox)
    today = dt.date(2027, 3, 1)
    await stub.SetClock(
        sandbox_pb2.SetClockRequest(freeze_at=_ts(dt.datetime(2027, 3, 1, 9, tzinfo=dt.UTC))),
        metadata=sandbox.metadata(),
    )
    await stub.SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_SMALL, seed=5), metadata=sandbox.metadata()
    )
    expected = {p.bsn: p for p in seeding.seed_persons("small", 5, today)}
    first = await brp_pb2_grpc.BrpServiceStub(sandbox.channel).GetPerson(
        brp_pb2.GetPersonRequest(bsn="999970008"), metadata=sandbox.metadata()
    )
    assert (first.given_names, first.surname) == (expected["999970008"].given_names, expected["999970008"].surname)


async def test_seed_size_reaches_every_register(sandbox: SandboxHarness) -> None:
    """A medium seed is medium in RIO and BRP (with the empty request every seed was small)."""
    from services.brp_sync.seeding import person_count
    from services.common.seeding import profile

    medium = await _stub(sandbox).SeedSandbox(
        sandbox_pb2.SeedSandboxRequest(size=sandbox_pb2.SEED_SIZE_MEDIUM, seed=7), metadata=sandbox.metadata()
    )

    assert medium.created["providers"] == profile("medium").schools
    assert medium.created["persons"] >= person_count("medium")


async def test_the_clock_stays_between_1990_and_2100_and_refuses_invalid_timestamps(sandbox: SandboxHarness) -> None:
    stub = _stub(sandbox)
    md = sandbox.metadata()
    before = await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=md)
    refused = [
        (sandbox_pb2.SetClockRequest(freeze_at=_ts(dt.datetime(9999, 1, 1, tzinfo=dt.UTC))), "freeze_at"),
        (sandbox_pb2.SetClockRequest(travel_to=_ts(dt.datetime(2101, 1, 1, tzinfo=dt.UTC))), "travel_to"),
        (sandbox_pb2.SetClockRequest(travel_to=_ts(dt.datetime(1989, 12, 31, 23, tzinfo=dt.UTC))), "travel_to"),
    ]
    for request, field in refused:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.SetClock(request, metadata=md)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(v.field, v.reason) for v in read_details(error.value)[1]] == [(field, "SBX-CLOCK-OUT-OF-RANGE")]
    invalid = [
        sandbox_pb2.SetClockRequest(freeze_at=Timestamp(seconds=0, nanos=-1)),
        sandbox_pb2.SetClockRequest(freeze_at=Timestamp(seconds=10**12)),
    ]
    for request in invalid:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.SetClock(request, metadata=md)
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert [(v.field, v.reason) for v in read_details(error.value)[1]] == [("freeze_at", "SBX-INVALID-TIMESTAMP")]
    # Nothing refused moved the clock.
    after = await stub.GetClock(sandbox_pb2.GetClockRequest(), metadata=md)
    assert not after.frozen and not before.frozen
    assert abs(after.now.ToDatetime(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
    edges = (dt.datetime(1990, 1, 1, tzinfo=dt.UTC), dt.datetime(2100, 12, 31, 23, 59, tzinfo=dt.UTC))
    for edge in edges:
        frozen = await stub.SetClock(sandbox_pb2.SetClockRequest(freeze_at=_ts(edge)), metadata=md)
        assert frozen.now.ToDatetime(tzinfo=dt.UTC) == edge


async def test_an_unknown_sandbox_id_from_a_register_is_not_found(sandbox: SandboxHarness) -> None:
    from services.common.caller import internal_metadata

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await _stub(sandbox).GetClock(
            sandbox_pb2.GetClockRequest(), metadata=internal_metadata(sandbox.internal_token, "sbx_nope")
        )
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
