"""The national seed's plan without a server: who is enrolled where, in which batches, with which BSNs."""

from __future__ import annotations

import collections
import datetime as dt

import grpc
import pytest

from services.brp_sync.seeding import national_persons, years_before
from services.common import identifiers as ids
from services.common.errors import RegistryError
from services.common.seeding import (
    NATIONAL_BATCH,
    NATIONAL_BSN_START,
    PROFILES,
    check_national_pupils,
    national_batches,
    national_bsns,
)

TODAY = dt.date(2026, 11, 2)


def test_every_pupil_is_planned_once_in_batches_rod_accepts_spread_evenly_over_the_schools() -> None:
    batches = national_batches(6_702, 67)
    assert [len(b) for b in batches] == [NATIONAL_BATCH] * 6 + [702]
    pairs = [pair for batch in batches for pair in batch]
    assert [pupil for pupil, _ in pairs] == list(range(6_702))
    per_school = collections.Counter(school for _, school in pairs)
    assert set(per_school) == set(range(67)) and set(per_school.values()) == {100, 101}
    with pytest.raises(ValueError):
        national_batches(10, 0)


def test_national_bsns_are_valid_synthetic_numbers_apart_from_every_sized_seed() -> None:
    bsns = national_bsns(5_000)
    assert len(set(bsns)) == 5_000 and bsns == national_bsns(5_000)
    assert all(ids.is_valid_bsn(b) and not ids.is_test_bsn(b) for b in bsns)
    # A sized seed's synthetic numbers count down from the test range, at most one per 12 numbers or so.
    sized_lowest = ids.TEST_BSN_FIRST - 12 * max(p.persons for p in PROFILES.values())
    assert max(int(b) for b in bsns) <= NATIONAL_BSN_START < sized_lowest


def test_national_pupils_are_of_primary_age_and_the_same_for_the_same_seed() -> None:
    bsns = national_bsns(2_000)
    persons = list(national_persons(bsns, 7, TODAY))
    assert [p.bsn for p in persons] == bsns
    assert all(years_before(TODAY, 13) < p.birth_date <= years_before(TODAY, 4) for p in persons)
    assert [p.birth_date for p in national_persons(bsns, 7, TODAY)] == [p.birth_date for p in persons]


def test_a_national_seed_without_the_synthetic_opt_in_is_refused_with_a_typed_error() -> None:
    assert check_national_pupils(0, synthetic_bsns=False) == 0
    assert check_national_pupils(1_300_000, synthetic_bsns=True) == 1_300_000
    with pytest.raises(RegistryError) as refused:
        check_national_pupils(3_000, synthetic_bsns=False)
    assert refused.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.reason == "SBX-NATIONAL-NEEDS-SYNTHETIC-BSNS"
    with pytest.raises(RegistryError) as negative:
        check_national_pupils(-1, synthetic_bsns=True)
    assert negative.value.reason == "SBX-INVALID-NATIONAL-PUPILS"
    with pytest.raises(RegistryError) as too_many:
        check_national_pupils(1_500_001, synthetic_bsns=True)
    assert too_many.value.reason == "SBX-INVALID-NATIONAL-PUPILS"
