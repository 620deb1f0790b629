"""The sandbox admin's use cases without a server: fake registers in process, a SQLite file as the unit of work."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from services.common.database import Database, make_engine
from services.common.errors import RegistryError
from services.common.migrations import upgrade
from services.sandbox import rules, service
from services.sandbox.peers import FakeNational, FakeRegister, FakeScenarios, Registers
from services.sandbox.rules import ClockMove, ClockTarget

NOW = dt.datetime(2026, 11, 28, 12, tzinfo=dt.UTC)


@pytest.fixture
def registers() -> Registers:
    rio = FakeRegister("rio", created={"boards": 4, "providers": 18})
    brp = FakeRegister("brp", created={"persons": 360})
    rod = FakeRegister("rod", created={})
    return Registers(seeding=(rio, brp), purging=(rod, rio, brp))


def fake(registers: Registers, name: str) -> FakeRegister:
    found = next(r for r in registers.purging if r.name == name)
    assert isinstance(found, FakeRegister)
    return found


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    engine = make_engine(f"sqlite:///{tmp_path / 'sandbox.db'}")
    upgrade("sandbox", engine)
    yield Database(engine)
    engine.dispose()


async def test_seeding_asks_rio_before_brp_and_adds_up_the_counts(registers: Registers) -> None:
    created = await service.seed_registers(registers, sandbox_id="sbx_1", size="small", seed=5, idempotency_key="k")
    assert created == {"boards": 4, "providers": 18, "persons": 360}
    assert fake(registers, "rio").calls == ["seed sbx_1"] and fake(registers, "brp").calls == ["seed sbx_1"]


async def test_a_failed_seed_empties_every_register_and_names_the_one_that_failed(registers: Registers) -> None:
    fake(registers, "brp").fail_seed = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RegistryError) as failed:
        await service.seed_registers(registers, sandbox_id="sbx_1", size="small", seed=5, idempotency_key="k")
    assert failed.value.code == grpc.StatusCode.UNAVAILABLE
    assert (failed.value.reason, failed.value.metadata) == ("SBX-SEED-FAILED", {"register": "brp"})
    assert "every register was emptied again" in failed.value.message
    # RIO had seeded: it was purged, so no register holds half a data set.
    assert fake(registers, "rio").seeded == set()
    assert fake(registers, "rio").calls == ["seed sbx_1", "purge sbx_1"]
    assert fake(registers, "rod").calls == ["purge sbx_1"]


async def test_the_scenario_enrolments_come_after_rio_and_brp_and_a_failure_empties_every_register(
    registers: Registers,
) -> None:
    scenarios = FakeScenarios()
    seeding = dataclasses.replace(registers, scenarios=scenarios)
    created = await service.seed_registers(seeding, sandbox_id="sbx_1", size="small", seed=5, idempotency_key="k")
    assert created["scenario_enrolments"] == 1 and scenarios.enrolled == ["sbx_1"]
    failing = dataclasses.replace(registers, scenarios=FakeScenarios(fail=grpc.StatusCode.FAILED_PRECONDITION))
    with pytest.raises(RegistryError) as failed:
        await service.seed_registers(failing, sandbox_id="sbx_2", size="small", seed=5, idempotency_key="k")
    assert (failed.value.reason, failed.value.metadata) == ("SBX-SEED-FAILED", {"register": "rod"})
    assert "sbx_2" not in fake(registers, "rio").seeded | fake(registers, "brp").seeded


async def test_a_failed_seed_whose_clean_up_fails_too_says_to_reset(registers: Registers) -> None:
    fake(registers, "brp").fail_seed = grpc.StatusCode.INTERNAL
    fake(registers, "rod").fail_purge = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RegistryError) as failed:
        await service.seed_registers(registers, sandbox_id="sbx_1", size="small", seed=5, idempotency_key="k")
    assert failed.value.code == grpc.StatusCode.INTERNAL
    assert "call ResetSandbox" in failed.value.message and "rod: UNAVAILABLE" in failed.value.message
    assert fake(registers, "rio").seeded == set()


async def test_a_reset_empties_every_register_it_can_and_names_the_others(registers: Registers) -> None:
    for name in ("rio", "brp"):
        await fake(registers, name).seed("sbx_1", size="small", seed=1, idempotency_key="")
    fake(registers, "rio").fail_purge = grpc.StatusCode.UNAVAILABLE
    with pytest.raises(RegistryError) as failed:
        await service.purge_registers(registers, sandbox_id="sbx_1", idempotency_key="r")
    assert (failed.value.code, failed.value.reason) == (grpc.StatusCode.UNAVAILABLE, "SBX-RESET-INCOMPLETE")
    assert failed.value.metadata == {"registers": "rio"}
    assert fake(registers, "brp").seeded == set() and fake(registers, "rio").seeded == {"sbx_1"}
    fake(registers, "rio").fail_purge = None
    await service.purge_registers(registers, sandbox_id="sbx_1", idempotency_key="r")
    assert fake(registers, "rio").seeded == set()


def test_the_clock_is_moved_within_its_range(database: Database) -> None:
    sandbox = database.transaction(lambda s: service.create_sandbox(s, name="", now=NOW))
    assert sandbox.name == rules.DEFAULT_NAME and sandbox.key.startswith("sk_test_")
    count_date = dt.datetime(2027, 10, 1, 9, tzinfo=dt.UTC)
    frozen = database.transaction(
        lambda s: service.set_clock(
            s, sandbox_id=sandbox.sandbox_id, target=ClockTarget(ClockMove.FREEZE_AT, count_date), real_now=NOW
        )
    )
    assert frozen.clock.now(NOW) == count_date
    travelled = database.transaction(
        lambda s: service.set_clock(
            s, sandbox_id=sandbox.sandbox_id, target=ClockTarget(ClockMove.TRAVEL_TO, count_date), real_now=NOW
        )
    )
    assert travelled.clock.now(NOW + dt.timedelta(hours=1)) == count_date + dt.timedelta(hours=1)
    for year in (1989, 2101, 9999):
        far = ClockTarget(ClockMove.TRAVEL_TO, dt.datetime(year, 6, 1, tzinfo=dt.UTC))
        with pytest.raises(RegistryError) as refused:
            database.transaction(
                lambda s: service.set_clock(s, sandbox_id=sandbox.sandbox_id, target=far, real_now=NOW)  # noqa: B023
            )
        assert [(v.field, v.code) for v in refused.value.violations] == [("travel_to", rules.CLOCK_OUT_OF_RANGE)]
    stored = database.transaction(lambda s: service.get_sandbox(s, sandbox.sandbox_id))
    assert stored.clock == travelled.clock
    reset = database.transaction(lambda s: service.reset_clock(s, sandbox_id=sandbox.sandbox_id, real_now=NOW))
    assert reset.clock.now(NOW) == NOW


def test_an_unknown_sandbox_is_not_found(database: Database) -> None:
    with pytest.raises(RegistryError) as unknown:
        database.transaction(lambda s: service.get_sandbox(s, "sbx_nope"))
    assert unknown.value.code == grpc.StatusCode.NOT_FOUND
    assert database.transaction(lambda s: service.sandbox_id_for_key(s, "sk_test_nope")) is None


def test_a_long_name_is_refused_naming_the_field(database: Database) -> None:
    with pytest.raises(RegistryError) as long_name:
        database.transaction(lambda s: service.create_sandbox(s, name="x" * 201, now=NOW))
    assert [v.field for v in long_name.value.violations] == ["name"]


async def test_the_default_sandbox_is_made_once_and_keeps_a_key_its_owner_kept(database: Database) -> None:
    sandbox_id, key, created = await service.ensure_default_sandbox(database)
    assert created
    assert await service.ensure_default_sandbox(database, known_key=key) == (sandbox_id, key, False)
    # Only hashes are stored: without the key, a new one is issued for the same sandbox (the old stays valid).
    again, new_key, created_again = await service.ensure_default_sandbox(database)
    assert (again, created_again) == (sandbox_id, False) and new_key != key
    assert database.transaction(lambda s: service.sandbox_id_for_key(s, key)) == sandbox_id
    assert database.transaction(lambda s: service.sandbox_id_for_key(s, new_key)) == sandbox_id


def test_creator_scopes_keep_callers_apart() -> None:
    assert rules.creator_scope("sbx_a", "ipv4:10.0.0.1:5000") == rules.creator_scope("sbx_a", "ipv4:10.0.0.2:6000")
    assert rules.creator_scope(None, "ipv4:10.0.0.1:5000") != rules.creator_scope(None, "ipv4:10.0.0.1:5001")
    assert rules.creator_scope(None, "ipv4:10.0.0.1:5000") != rules.creator_scope("sbx_a", "ipv4:10.0.0.1:5000")
    assert len(rules.creator_scope(None, "ipv6:[" + "f" * 200 + "]:1")) <= 64


async def test_a_national_seed_enrols_after_every_register_and_a_failure_keeps_what_was_seeded(
    registers: Registers,
) -> None:
    national = FakeNational()
    seeding = dataclasses.replace(registers, national=national)
    created = await service.seed_registers(
        seeding, sandbox_id="sbx_1", size="small", seed=5, idempotency_key="k", synthetic_bsns=True, national_pupils=30
    )
    assert created["national_enrolments"] == 30 and national.enrolled == [("sbx_1", 30)]
    # A failed national batch does not throw 20 minutes of enrolments away: a repeated seed finishes it.
    failing = dataclasses.replace(registers, national=FakeNational(fail=grpc.StatusCode.UNAVAILABLE))
    with pytest.raises(RegistryError) as failed:
        await service.seed_registers(
            failing,
            sandbox_id="sbx_2",
            size="small",
            seed=5,
            idempotency_key="k",
            synthetic_bsns=True,
            national_pupils=30,
        )
    assert (failed.value.reason, failed.value.metadata) == ("SBX-NATIONAL-SEED-INCOMPLETE", {"register": "rod"})
    assert "repeat SeedSandbox" in failed.value.message
    assert "sbx_2" in fake(registers, "rio").seeded and "sbx_2" in fake(registers, "brp").seeded
    assert fake(registers, "rod").calls == []
