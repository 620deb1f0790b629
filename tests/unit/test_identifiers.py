"""Identifier validation and generation: BSN, onderwijsnummer, BRIN, RIO and course codes."""

from __future__ import annotations

import random

import pytest
from faker import Faker

from services.common import identifiers as ids


@pytest.mark.parametrize("bsn", ["999970008", "111222333", "123456782"])
def test_known_valid_bsns_pass_the_11_proof(bsn: str) -> None:
    assert ids.is_valid_bsn(bsn)
    assert ids.validate_bsn(bsn) == bsn


@pytest.mark.parametrize(
    "bsn", ["123456789", "999970009", "12345678", "1234567890", "12345678a", "000000000", "１２３４５６７８２"]
)
def test_invalid_bsns_are_refused_with_a_reason(bsn: str) -> None:
    assert not ids.is_valid_bsn(bsn)
    with pytest.raises(ids.InvalidIdentifierError):
        ids.validate_bsn(bsn)


def test_bsn_error_says_whether_shape_or_checksum_is_wrong() -> None:
    with pytest.raises(ids.InvalidIdentifierError, match="9 digits"):
        ids.validate_bsn("12345")
    with pytest.raises(ids.InvalidIdentifierError, match="11-proof"):
        ids.validate_bsn("123456789")


def test_every_test_range_bsn_is_valid_and_in_the_official_range() -> None:
    bsns = list(ids.test_bsns())
    assert len(bsns) > 2500
    assert all(ids.TEST_BSN_FIRST <= int(b) <= ids.TEST_BSN_LAST and ids.is_valid_bsn(b) for b in bsns)
    assert bsns == sorted(set(bsns))


def test_random_bsns_are_valid_and_deterministic_per_seed() -> None:
    first = [ids.random_bsn(random.Random(7)) for _ in range(3)]
    again = [ids.random_bsn(random.Random(7)) for _ in range(3)]
    assert first == again
    rng = random.Random(1)
    assert all(ids.is_valid_bsn(ids.random_bsn(rng)) for _ in range(1000))


def test_faker_nl_bsns_pass_our_11_proof() -> None:
    fake = Faker("nl_NL")
    fake.seed_instance(3)
    assert all(ids.is_valid_bsn(fake.ssn()) for _ in range(200))


def test_onderwijsnummers_have_their_own_checksum_and_never_pass_as_bsn() -> None:
    made = [n for serial in range(2000) if (n := ids.make_onderwijsnummer(serial)) is not None]
    assert 1700 < len(made) < 2000  # about 1 serial in 11 has no fitting check digit
    for number in made:
        assert number.startswith("10") and len(number) == 9
        assert ids.is_valid_onderwijsnummer(number)
        assert not ids.is_valid_bsn(number)
    assert len(set(made)) == len(made)


def test_onderwijsnummer_validation() -> None:
    valid = ids.make_onderwijsnummer(1)
    assert valid is not None
    assert ids.validate_onderwijsnummer(valid) == valid
    with pytest.raises(ids.InvalidIdentifierError, match="starting with 10"):
        ids.validate_onderwijsnummer("999970008")
    broken = valid[:-1] + str((int(valid[-1]) + 1) % 10)
    with pytest.raises(ids.InvalidIdentifierError, match="11-proof"):
        ids.validate_onderwijsnummer(broken)


@pytest.mark.parametrize(
    ("code", "ok"), [("25BE", True), ("00AA", True), ("25be", False), ("2BEE", False), ("25BE0", False)]
)
def test_institution_codes(code: str, ok: bool) -> None:
    if ok:
        assert ids.validate_institution_code(code) == code
    else:
        with pytest.raises(ids.InvalidIdentifierError):
            ids.validate_institution_code(code)


def test_branch_codes() -> None:
    assert ids.validate_branch_code("25BE00") == "25BE00"
    with pytest.raises(ids.InvalidIdentifierError):
        ids.validate_branch_code("25BE")


@pytest.mark.parametrize(
    ("kind", "code", "ok"),
    [
        ("board", "100B001", True),
        ("provider", "100A001", True),
        ("location", "100X001", True),
        ("course_unit", "1234O5678", True),
        ("board", "100A001", False),
        ("location", "10X001", False),
    ],
)
def test_rio_codes(kind: str, code: str, ok: bool) -> None:
    if ok:
        assert ids.validate_rio_code(kind, code) == code
    else:
        with pytest.raises(ids.InvalidIdentifierError):
            ids.validate_rio_code(kind, code)


@pytest.mark.parametrize(
    ("system", "code", "ok"),
    [
        ("CREBO", "25180", True),
        ("ISAT", "34139", True),
        ("ILT", "0231", True),
        ("PO", "BAO", True),
        ("CREBO", "2518", False),
        ("ILT", "02311", False),
        ("PO", "XYZ", False),
    ],
)
def test_course_codes(system: str, code: str, ok: bool) -> None:
    if ok:
        assert ids.validate_course_code(system, code) == code
    else:
        with pytest.raises(ids.InvalidIdentifierError):
            ids.validate_course_code(system, code)


def test_generated_codes_are_valid_and_distinct() -> None:
    boards = [ids.format_rio_code("board", n) for n in range(1, 2000)]
    assert all(ids.validate_rio_code("board", b) for b in boards)
    assert len(set(boards)) == len(boards)
    brins = [ids.format_institution_code(n) for n in range(10_000)]
    assert all(ids.validate_institution_code(b) for b in brins)
    assert len(set(brins)) == len(brins)
