"""Seed data that cannot be a real person: default seeds and simulated days use only test-range BSNs."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.brp_sync import scenarios, seeding
from services.brp_sync.simulator import simulate_day
from services.common import identifiers as ids
from services.common import places
from services.common.seeding import PROFILES
from services.rio.seed import plan

TODAY = dt.date(2026, 11, 28)


@pytest.mark.parametrize("size", sorted(PROFILES))
def test_a_default_seed_of_any_size_has_only_test_range_bsns(size: str) -> None:
    persons = seeding.seed_persons(size, 20260101, TODAY)
    assert persons, "a seed holds persons"
    outside = [p.bsn for p in persons if not ids.is_test_bsn(p.bsn)]
    assert outside == []
    assert len({p.bsn for p in persons}) == len(persons)
    assert len(persons) == min(PROFILES[size].persons, seeding.TEST_RANGE_SEED_LIMIT)


def test_synthetic_bsns_come_only_with_the_opt_in_and_after_the_test_range() -> None:
    default = seeding.seed_persons("medium", 3, TODAY)
    opted = seeding.seed_persons("medium", 3, TODAY, synthetic_bsns=True)
    assert len(opted) == PROFILES["medium"].persons > len(default)
    in_range = [p.bsn for p in opted if ids.is_test_bsn(p.bsn)]
    synthetic = [p.bsn for p in opted if not ids.is_test_bsn(p.bsn)]
    # The whole test range (but the scenario persons' numbers) is used before any synthetic number; every
    # synthetic one is valid and below it.
    assert len(in_range) == ids.TEST_BSN_COUNT - len(scenarios.reserved_bsns())
    assert not set(in_range) & scenarios.reserved_bsns()
    assert all(ids.is_valid_bsn(b) and int(b) < ids.TEST_BSN_FIRST for b in synthetic)
    assert len(set(synthetic)) == len(synthetic) == len(opted) - len(in_range)


def test_the_test_range_count_is_what_the_range_holds() -> None:
    assert len(list(ids.test_bsns())) == ids.TEST_BSN_COUNT


def test_without_the_opt_in_the_bsn_source_ends_with_the_test_range() -> None:
    free = [b for b in ids.test_bsns() if b not in scenarios.reserved_bsns()]
    assert list(seeding.bsn_source(set(free[:-3]))) == free[-3:]
    more = seeding.bsn_source(set(free[:-3]), synthetic=True)
    assert [next(more) for _ in range(4)][-1] == next(ids.synthetic_bsns())


def test_the_scenario_persons_bsns_are_reserved_test_range_numbers() -> None:
    reserved = scenarios.reserved_bsns()
    assert reserved and all(ids.is_test_bsn(b) for b in reserved)
    assert not reserved & set(seeding.bsn_source())


def test_a_simulated_day_never_invents_a_bsn_outside_the_test_range_unasked() -> None:
    # A register that already holds most of the test range: births and immigrations run out of numbers.
    persons = seeding.seed_persons("small", 20260101, TODAY)
    crowded = list(persons)
    used = {p.bsn for p in crowded}
    spare = [b for b in ids.test_bsns() if b not in used][:-20]
    template = crowded[0]
    crowded += [dataclasses.replace(template, bsn=b) for b in spare]
    day = simulate_day(crowded, TODAY, 3000, seed=1)
    new = {m.bsn for m in day} - {p.bsn for p in crowded}
    assert len(new) <= 20 and all(ids.is_test_bsn(b) for b in new)
    opted = simulate_day(crowded, TODAY, 3000, seed=1, synthetic_bsns=True)
    assert any(not ids.is_test_bsn(m.bsn) for m in opted)


def test_rio_seed_addresses_have_the_municipality_code_of_their_place() -> None:
    locations = plan(PROFILES["medium"], 20260101).locations
    assert len(locations) > 500
    for location in locations:
        municipality = places.BY_CODE[location["municipality_code"]]
        assert location["city"] == municipality.name
        assert location["postcode"].startswith(municipality.postcode_prefix)
