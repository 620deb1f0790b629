"""The scenario table (services/brp_sync/scenarios.toml) as pure data: dates from the seed date, messages that
apply cleanly under BRP's rules, and the vendor documentation that lists every person."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from services.brp_sync import rules, scenarios, xml_codec
from services.brp_sync.rules import Gebeurtenis
from services.common.identifiers import is_test_bsn

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("seed_date", "expected"),
    [
        # The first 1 February after the seed date, four years back, one day on: 4 the day after the count date.
        (dt.date(2026, 11, 2), dt.date(2023, 2, 2)),
        (dt.date(2027, 1, 31), dt.date(2023, 2, 2)),
        # On the count date itself the next one is a year later: the person stays under 4 on both.
        (dt.date(2027, 2, 1), dt.date(2024, 2, 2)),
    ],
)
def test_an_anchored_birth_date_counts_from_the_first_anchor_day_after_the_seed(
    seed_date: dt.date, expected: dt.date
) -> None:
    assert scenarios.by_key("jonger-dan-4").birth.on(seed_date) == expected
    assert rules.age_on(expected, dt.date(expected.year + 4, 2, 1)) == 3


def test_a_plain_birth_date_counts_back_from_the_seed_date_and_29_february_falls_on_28() -> None:
    assert scenarios.DateRule(years=-8).on(dt.date(2026, 11, 2)) == dt.date(2018, 11, 2)
    assert scenarios.DateRule(years=-1).on(dt.date(2028, 2, 29)) == dt.date(2027, 2, 28)


def test_every_bsn_is_a_distinct_test_range_number_and_one_person_has_none() -> None:
    persons = scenarios.table().persons
    with_bsn = [p.bsn for p in persons if p.bsn]
    assert len(set(with_bsn)) == len(with_bsn) == len(persons) - 1
    assert all(is_test_bsn(bsn) for bsn in with_bsn)
    assert scenarios.reserved_bsns() == frozenset(with_bsn)


def test_a_table_with_a_bsn_outside_the_test_range_is_refused() -> None:
    text = (ROOT / "services/brp_sync/scenarios.toml").read_text(encoding="utf-8")
    with pytest.raises(ValueError, match="test range"):
        scenarios.parse(text.replace('bsn = "999999990"', 'bsn = "111222333"'))


def test_the_schedule_is_in_date_order_relative_to_the_seed_date() -> None:
    seed = dt.date(2026, 11, 2)
    schedule = scenarios.schedule(seed)
    assert [(m.person_key, (m.effective_date - seed).days, m.event) for m in schedule] == [
        ("naam-gewijzigd", 7, Gebeurtenis.NAAM_GEWIJZIGD),
        ("geboortedatum-gecorrigeerd", 14, Gebeurtenis.GECORRIGEERD),
        ("emigreert", 30, Gebeurtenis.EMIGRATIE),
        ("overlijdt", 30, Gebeurtenis.OVERLEDEN),
        ("emigreert", 120, Gebeurtenis.IMMIGRATIE),
    ]
    corrected = next(m for m in schedule if m.event is Gebeurtenis.GECORRIGEERD)
    assert corrected.birth_date == dt.date(2022, 2, 2)
    stored = scenarios.from_payload(
        person_key=corrected.person_key,
        step=corrected.step,
        bsn=corrected.bsn,
        effective_date=corrected.effective_date,
        event=corrected.event.value,
        payload=corrected.payload(),
    )
    assert stored == corrected


def test_every_scheduled_message_applies_cleanly_under_brps_rules_and_passes_the_xsd() -> None:
    """Played in order on the seeded persons, as the sender does, each message is accepted: next Volgnummer,
    next Versienummer, the record's A-nummer."""
    seed = dt.date(2026, 11, 2)
    persons = {p.bsn: p for p in scenarios.seeded_persons(seed)}
    for number, message in enumerate(scenarios.schedule(seed)):
        before = persons[message.bsn]
        mutatie = scenarios.mutatie(message, before, message_id=f"00000000-0000-4000-8000-{number:012d}")
        assert (mutatie.volgnummer, mutatie.versienummer) == (before.last_sequence + 1, before.versienummer + 1)
        assert xml_codec.schema_errors(xml_codec.encode(mutatie)) == []
        persons[message.bsn] = rules.apply(before, mutatie)
    assert persons[scenarios.by_key("overlijdt").bsn].death_date == seed + dt.timedelta(days=30)
    returned = persons[scenarios.by_key("emigreert").bsn]
    assert returned.is_resident and returned.last_sequence == 2
    assert persons[scenarios.by_key("naam-gewijzigd").bsn].surname == "Nieuwenaam"
    assert persons[scenarios.by_key("geboortedatum-gecorrigeerd").bsn].birth_date == dt.date(2022, 2, 2)


def test_the_rod_readme_documents_every_scenario_person_with_its_bsn() -> None:
    readme = (ROOT / "services/rod/README.md").read_text(encoding="utf-8")
    section = readme.split("## Scenario persons", 1)[1].split("\n## ", 1)[0]
    for person in scenarios.table().persons:
        row = next((line for line in section.splitlines() if f"(`{person.key}`)" in line), "")
        assert row, f"{person.key} has no row in services/rod/README.md (Scenario persons)"
        assert (person.bsn or "none") in row
        assert f"{person.given_names} {person.surname}" in row
