"""Seed sizes shared by the registers, so BRP seeds enough persons for the schools RIO seeds."""

from __future__ import annotations

from dataclasses import dataclass


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
