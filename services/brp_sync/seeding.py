"""Seed persons for a sandbox: children and students aged 4 to 25 with test-range BSNs and Dutch names and addresses."""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator

from faker import Faker

from services.brp_sync import scenarios
from services.brp_sync.rules import Address, MaritalStatus, PersonState
from services.common import places
from services.common.identifiers import TEST_BSN_COUNT, a_nummer_for_bsn, synthetic_bsns, test_bsns
from services.common.seeding import profile

# A default seed holds at most this many persons, all with test-range BSNs: the rest of the range
# (about 1,500 numbers) stays free for the births and immigrations of a simulated day (10,000 messages
# need about 1,500 new BSNs). More persons only with SeedSandboxRequest.synthetic_bsns.
TEST_RANGE_SEED_LIMIT = 1_200
assert TEST_RANGE_SEED_LIMIT < TEST_BSN_COUNT

# Ages that together cover every school sector: po from 4, vo 12–18, mbo 16–20+, ho 17–25.
YOUNGEST_AGE = 4
OLDEST_AGE = 25

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
        municipality = rng.choices(places.MUNICIPALITIES, weights=places.WEIGHTS)[0]
    else:
        municipality = places.BY_CODE[municipality_code]
    code, city, postcode_prefix = municipality.code, municipality.name, municipality.postcode_prefix
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


def bsn_source(taken: set[str] | None = None, *, synthetic: bool = False) -> Iterator[str]:
    """BSNs for new persons, never one in `taken`: the official test range, and only when `synthetic` is
    set (the caller opted in) the synthetic numbers below it. Without the opt-in the source ends with the
    test range: a number that may belong to a real person is never handed out unasked. The scenario
    persons' numbers (scenarios.toml) are reserved for them."""
    seen = taken if taken is not None else set()
    seen.update(scenarios.reserved_bsns())
    for bsn in test_bsns():
        if bsn not in seen:
            seen.add(bsn)
            yield bsn
    if not synthetic:
        return
    for bsn in synthetic_bsns():
        if bsn not in seen:
            seen.add(bsn)
            yield bsn


def person_count(size: str, *, synthetic_bsns: bool = False) -> int:
    """How many persons a seed of this size holds: the profile's number, capped to the test range by default."""
    wanted = profile(size).persons
    return wanted if synthetic_bsns else min(wanted, TEST_RANGE_SEED_LIMIT)


def years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def seed_persons(size: str, seed: int, today: dt.date, *, synthetic_bsns: bool = False) -> list[PersonState]:
    """person_count(size) persons, ages spread evenly over 4–25, the same list for the same arguments.

    By default every BSN lies in the official test range and the number of persons is capped so that it
    fits (see TEST_RANGE_SEED_LIMIT). `synthetic_bsns=True` gives the profile's full number, the persons
    beyond the test range getting synthetic numbers that a real person may hold (see
    identifiers.synthetic_bsns): only for a caller who asked for it.
    """
    count = person_count(size, synthetic_bsns=synthetic_bsns)
    rng = random.Random(seed)
    fake = new_faker(seed)
    bsns = bsn_source(synthetic=synthetic_bsns)
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
        bsn = next(bsns)
        persons.append(
            PersonState(
                bsn=bsn,
                a_nummer=a_nummer_for_bsn(bsn),
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


# Primary school ages (po): from 4 up to 12 on the seed date.
PRIMARY_YOUNGEST, PRIMARY_OLDEST = 4, 12
# Names and addresses drawn from a pool: Faker per person would cost minutes for 1,300,000 pupils.
_NATIONAL_POOL = 2_000


def national_persons(bsns: list[str], seed: int, today: dt.date) -> Iterator[PersonState]:
    """The national seed's primary pupils (aged 4 to 12), one per BSN of seeding.national_bsns, lazily.

    Ages spread evenly over the primary span as seed_persons spreads them; the same list for the same
    arguments.
    """
    rng = random.Random(seed ^ 0x5EED)
    fake = new_faker(seed ^ 0x5EED)
    pool = [(random_names(rng, fake, sex), random_address(rng, fake)) for sex in ("M", "V") * (_NATIONAL_POOL // 2)]
    youngest = years_before(today, PRIMARY_YOUNGEST)
    oldest = years_before(today, PRIMARY_OLDEST + 1) + dt.timedelta(days=1)
    span_days = (youngest - oldest).days + 1
    count = len(bsns)
    for index, bsn in enumerate(bsns):
        offset = int((index + rng.random()) * span_days / count)
        sex = "M" if index % 2 == 0 else "V"
        (given, prefix, surname), address = pool[(2 * rng.randrange(_NATIONAL_POOL // 2)) + (index % 2)]
        yield PersonState(
            bsn=bsn,
            a_nummer=a_nummer_for_bsn(bsn),
            given_names=given,
            surname_prefix=prefix,
            surname=surname,
            birth_date=youngest - dt.timedelta(days=offset),
            sex=sex,
            address=address,
            marital_status=MaritalStatus.ONGEHUWD,
        )
