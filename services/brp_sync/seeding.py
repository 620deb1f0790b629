"""Seed persons for a sandbox: children and students aged 4 to 25 with test-range BSNs and Dutch names and addresses."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from faker import Faker

from services.brp_sync.rules import Address, MaritalStatus, PersonState
from services.common.identifiers import random_bsn, test_bsns
from services.common.seeding import profile

# Ages that together cover every school sector: po from 4, vo 12–18, mbo 16–20+, ho 17–25.
YOUNGEST_AGE = 4
OLDEST_AGE = 25

# Large municipalities with their CBS code, the first two digits of their postcodes, and a weight
# roughly proportional to population (CBS 2024, in tens of thousands).
MUNICIPALITIES: tuple[tuple[str, str, str, int], ...] = (
    ("0363", "Amsterdam", "10", 93),
    ("0599", "Rotterdam", "30", 67),
    ("0518", "'s-Gravenhage", "25", 56),
    ("0344", "Utrecht", "35", 37),
    ("0772", "Eindhoven", "56", 24),
    ("0014", "Groningen", "97", 24),
    ("0855", "Tilburg", "50", 23),
    ("0034", "Almere", "13", 22),
    ("0758", "Breda", "48", 19),
    ("0268", "Nijmegen", "65", 18),
    ("0200", "Apeldoorn", "73", 17),
    ("0392", "Haarlem", "20", 17),
    ("0202", "Arnhem", "68", 17),
    ("0153", "Enschede", "75", 16),
    ("0307", "Amersfoort", "38", 16),
    ("0479", "Zaanstad", "15", 16),
    ("0796", "'s-Hertogenbosch", "52", 16),
    ("0193", "Zwolle", "80", 13),
    ("0546", "Leiden", "23", 13),
    ("0935", "Maastricht", "62", 12),
)
_WEIGHTS = [m[3] for m in MUNICIPALITIES]

# Surname prefixes (voorvoegsels), longest first so "van der" wins over "van".
_PREFIXES = ("van der", "van den", "van de", "van 't", "in 't", "van", "de", "den", "der", "ter", "te", "'t")
# Postcode letter pairs PostNL does not use.
_UNUSED_LETTERS = {"SA", "SD", "SS"}


def split_surname(full: str) -> tuple[str, str]:
    """("van der", "Berg") from "van der Berg": BRP keeps the prefix apart from the surname."""
    for prefix in _PREFIXES:
        if full.startswith(prefix + " ") and len(full) > len(prefix) + 1:
            return prefix, full[len(prefix) + 1 :]
    return "", full


def random_address(rng: random.Random, fake: Faker, *, municipality_code: str | None = None) -> Address:
    """A plausible Dutch address, in the given municipality or one chosen by population."""
    if municipality_code is None:
        code, city, postcode_prefix, _ = rng.choices(MUNICIPALITIES, weights=_WEIGHTS)[0]
    else:
        code, city, postcode_prefix, _ = next(m for m in MUNICIPALITIES if m[0] == municipality_code)
    while True:
        letters = chr(65 + rng.randrange(26)) + chr(65 + rng.randrange(26))
        if letters not in _UNUSED_LETTERS:
            break
    addition = rng.choice(("A", "B", "1", "2", "bis")) if rng.random() < 0.08 else ""
    return Address(
        street=fake.street_name(),
        house_number=rng.randint(1, 250),
        house_number_addition=addition,
        postcode=f"{postcode_prefix}{rng.randrange(100):02d}{letters}",
        city=city,
        municipality_code=code,
    )


def random_names(rng: random.Random, fake: Faker, sex: str) -> tuple[str, str, str]:
    """(given names, surname prefix, surname); one to three given names, as Dutch persons often have."""
    first = fake.first_name_male if sex == "M" else fake.first_name_female
    given = " ".join(first() for _ in range(rng.choices((1, 2, 3), weights=(50, 35, 15))[0]))
    prefix, surname = split_surname(fake.last_name())
    return given, prefix, surname


def new_faker(seed: int) -> Faker:
    fake = Faker("nl_NL")
    fake.seed_instance(seed)
    return fake


def bsn_source(rng: random.Random, taken: set[str] | None = None) -> Iterator[str]:
    """BSNs for new persons: the official test range first, then random valid ones; never one in `taken`."""
    seen = taken if taken is not None else set()
    for bsn in test_bsns():
        if bsn not in seen:
            seen.add(bsn)
            yield bsn
    while True:
        bsn = random_bsn(rng)
        if bsn not in seen:
            seen.add(bsn)
            yield bsn


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def seed_persons(size: str, seed: int, today: dt.date) -> list[PersonState]:
    """persons_per_school × schools persons, ages spread evenly over 4–25, the same list for the same arguments."""
    count = profile(size).persons
    rng = random.Random(seed)
    fake = new_faker(seed)
    bsns = bsn_source(rng)
    youngest = years_before(today, YOUNGEST_AGE)
    oldest = years_before(today, OLDEST_AGE + 1) + dt.timedelta(days=1)
    span_days = (youngest - oldest).days + 1
    persons: list[PersonState] = []
    for index in range(count):
        # Even spread: the index walks through the age span, jitter within one slot keeps dates varied.
        offset = int((index + rng.random()) * span_days / count)
        birth = youngest - dt.timedelta(days=offset)
        sex = "M" if rng.random() < 0.5 else "V"
        given, prefix, surname = random_names(rng, fake, sex)
        age = (today - birth).days // 365
        status = MaritalStatus.ONGEHUWD
        if age >= 20 and rng.random() < 0.08:
            status = MaritalStatus.GEHUWD if rng.random() < 0.7 else MaritalStatus.PARTNERSCHAP
        persons.append(
            PersonState(
                bsn=next(bsns),
                given_names=given,
                surname_prefix=prefix,
                surname=surname,
                birth_date=birth,
                sex=sex,
                address=random_address(rng, fake),
                marital_status=status,
            )
        )
    rng.shuffle(persons)
    return persons
