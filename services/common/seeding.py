"""Seed sizes shared by the registers, so BRP seeds enough persons for the schools RIO seeds."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.errors import FieldViolation, invalid_argument
from services.common.identifiers import TEST_BSN_FIRST, is_valid_bsn


@dataclass(frozen=True)
class SeedProfile:
    """How many of each thing a seeded sandbox holds.

    Full size follows the national shape: about 930 primary school boards
    and 6,700 primary schools (DUO open data), plus vo, mbo and ho.
    """

    primary_boards: int
    primary_schools: int
    secondary_schools: int
    mbo_institutions: int
    ho_institutions: int
    # Persons BRP seeds per school, of ages fitting that school's sector.
    persons_per_school: int

    @property
    def schools(self) -> int:
        return self.primary_schools + self.secondary_schools + self.mbo_institutions + self.ho_institutions

    @property
    def persons(self) -> int:
        return self.schools * self.persons_per_school


PROFILES: dict[str, SeedProfile] = {
    "small": SeedProfile(
        primary_boards=4,
        primary_schools=10,
        secondary_schools=4,
        mbo_institutions=2,
        ho_institutions=2,
        persons_per_school=20,
    ),
    "medium": SeedProfile(
        primary_boards=93,
        primary_schools=670,
        secondary_schools=65,
        mbo_institutions=7,
        ho_institutions=5,
        persons_per_school=20,
    ),
    "full": SeedProfile(
        primary_boards=930,
        primary_schools=6700,
        secondary_schools=650,
        mbo_institutions=65,
        ho_institutions=50,
        persons_per_school=20,
    ),
}


def profile(size: str) -> SeedProfile:
    try:
        return PROFILES[size]
    except KeyError:
        raise ValueError(f"unknown seed size {size!r}; choose one of {', '.join(PROFILES)}") from None


# The national primary register (issue 11 item 5): 1,300,000 primary pupils (DUO open data, "Aantal
# leerlingen in het primair onderwijs", 2021) spread over the primary schools.
NATIONAL_PUPILS = 1_300_000
# A bound above the national figure: one call cannot ask for hours of seeding (or more BSNs than exist).
NATIONAL_MAX_PUPILS = 1_500_000
# ROD's RegisterEnrolments takes 1 to 1,000 items (rod.proto).
NATIONAL_BATCH = 1_000
# National pupils' BSNs count down from here: below every synthetic number a sized seed can take (full
# with synthetic_bsns: 149,300 persons, about 11 numbers apart, so down to about 998,330,000), so BRP
# and SandboxAdmin derive the same numbers without either reading the other's tables.
NATIONAL_BSN_START = 997_000_000
assert TEST_BSN_FIRST - 12 * max(p.persons for p in PROFILES.values()) > NATIONAL_BSN_START


def national_bsns(count: int) -> list[str]:
    """The BSNs of a national seed's `count` pupils: 11-proof numbers counting down from NATIONAL_BSN_START.

    WARNING: these lie outside the official test range, so a real person may hold any of them (see
    identifiers.synthetic_bsns); only for a caller who set SeedSandboxRequest.synthetic_bsns.
    """
    found: list[str] = []
    number = NATIONAL_BSN_START
    while len(found) < count:
        candidate = f"{number:09d}"
        if is_valid_bsn(candidate):
            found.append(candidate)
        number -= 1
    return found


def national_batches(count: int, schools: int, batch: int = NATIONAL_BATCH) -> list[list[tuple[int, int]]]:
    """(pupil index, school index) pairs in batches of at most `batch`: one primary enrolment per pupil.

    Pupils go round the schools in turn, so each school gets count // schools pupils or one more (a
    national seed of 1,300,000 at 6,700 schools: 194 each, the national average of about 190).
    """
    if schools <= 0:
        raise ValueError("a national seed needs at least one primary school")
    pairs = [(pupil, pupil % schools) for pupil in range(count)]
    return [pairs[start : start + batch] for start in range(0, count, batch)]


def check_national_pupils(count: int, *, synthetic_bsns: bool) -> int:
    """`count` when a national seed of that many pupils may run: INVALID_ARGUMENT (typed) otherwise.

    The BSN test range holds about 2,700 numbers, so national pupils need the caller's explicit opt-in
    to synthetic numbers (the seed's fidelity rule: synthetic only by explicit choice).
    """
    if not 0 <= count <= NATIONAL_MAX_PUPILS:
        raise invalid_argument(
            [FieldViolation("national_pupils", f"must be 0 to {NATIONAL_MAX_PUPILS:,}", "SBX-INVALID-NATIONAL-PUPILS")]
        )
    if count and not synthetic_bsns:
        raise invalid_argument(
            [
                FieldViolation(
                    "synthetic_bsns",
                    f"a national seed of {count:,} pupils needs synthetic_bsns: the BSN test range holds about 2,700",
                    "SBX-NATIONAL-NEEDS-SYNTHETIC-BSNS",
                )
            ],
            reason="SBX-NATIONAL-NEEDS-SYNTHETIC-BSNS",
        )
    return count
