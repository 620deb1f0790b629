"""History the person copy keeps (issue 13.3, 13.4): stays abroad as periods, corrected values, ended follow
indications; and ROD's reading of them (where a pupil lived on a count date, when its indication ends)."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services._gen.registry.v1 import brp_pb2
from services.brp_sync import codec as brp_codec
from services.brp_sync import store
from services.brp_sync.rules import (
    Emigratie,
    Gebeurtenis,
    Mutatie,
    Overlijden,
    PersonState,
    Persoon,
    RuleViolationError,
    StayAbroad,
    apply,
    follows_change,
)
from services.brp_sync.tables import BrpPerson
from services.common.identifiers import a_nummer_for_bsn
from services.rod import codec as rod_codec
from services.rod import funding, rules
from tests.unit.test_brp_rules import address, person

D = dt.date
LEFT, BACK = D(2026, 9, 20), D(2026, 10, 11)


def change(event: Gebeurtenis, on: dt.date, sequence: int, **categories: object) -> Mutatie:
    return Mutatie(
        bericht_id=f"00000000-0000-4000-8000-{sequence:012d}",
        bsn=person().bsn,
        volgnummer=sequence,
        gemeentecode="0363",
        gebeurtenis=event,
        datum_ingang=on,
        **categories,  # type: ignore[arg-type]
    )


def abroad_and_back(left: dt.date = LEFT, back: dt.date = BACK) -> PersonState:
    gone = apply(person(), change(Gebeurtenis.EMIGRATIE, left, 4, emigratie=Emigratie("5010", left)))
    return apply(gone, change(Gebeurtenis.IMMIGRATIE, back, 5, verblijfplaats=address()))


def test_a_return_ends_the_stay_abroad_which_stays_in_history() -> None:
    gone = apply(person(), change(Gebeurtenis.EMIGRATIE, LEFT, 4, emigratie=Emigratie("BE", LEFT)))
    assert gone.abroad == (StayAbroad("5010", LEFT),)
    home = apply(gone, change(Gebeurtenis.IMMIGRATIE, BACK, 5, verblijfplaats=address()))
    assert home.emigration_date is None and home.address is not None
    assert home.abroad == (StayAbroad("5010", LEFT, BACK),)
    # [first day abroad, day back): the day of departure is abroad, the day back is at home.
    assert not home.abroad_on(LEFT - dt.timedelta(days=1)) and home.abroad_on(LEFT)
    assert home.abroad_on(BACK - dt.timedelta(days=1)) and not home.abroad_on(BACK)
    again = apply(home, change(Gebeurtenis.EMIGRATIE, BACK, 6, emigratie=Emigratie("9089", BACK)))
    assert [s.country_code for s in again.abroad] == ["5010", "9089"] and again.abroad[-1].end is None


@pytest.mark.parametrize("back", [LEFT, LEFT - dt.timedelta(days=1)])
def test_a_return_on_or_before_the_departure_is_refused(back: dt.date) -> None:
    gone = apply(person(), change(Gebeurtenis.EMIGRATIE, LEFT, 4, emigratie=Emigratie("5010", LEFT)))
    with pytest.raises(RuleViolationError) as refused:
        apply(gone, change(Gebeurtenis.IMMIGRATIE, back, 5, verblijfplaats=address()))
    assert refused.value.code == "SBX-BRP-RETURN-BEFORE-DEPARTURE"


def test_a_departure_before_the_last_return_is_refused() -> None:
    home = abroad_and_back()
    early = BACK - dt.timedelta(days=1)
    with pytest.raises(RuleViolationError) as refused:
        apply(home, change(Gebeurtenis.EMIGRATIE, BACK, 6, emigratie=Emigratie("9089", early)))
    assert refused.value.code == "SBX-BRP-RETURN-BEFORE-DEPARTURE"


def test_a_return_of_a_person_stored_without_stays_keeps_the_stay_its_row_describes() -> None:
    # Rows from before the history was kept (the migration rebuilds most of them from the log).
    gone = person(address=None, emigration_date=LEFT, emigration_country_code="9089")
    home = apply(gone, change(Gebeurtenis.IMMIGRATIE, BACK, 4, verblijfplaats=address()))
    assert home.abroad == (StayAbroad("9089", LEFT, BACK),)


def test_a_birth_date_correction_keeps_the_old_value() -> None:
    corrected = apply(
        person(), change(Gebeurtenis.GECORRIGEERD, D(2026, 11, 1), 4, persoon=Persoon(geboortedatum=D(2000, 5, 18)))
    )
    assert corrected.birth_date == D(2000, 5, 18)
    [kept] = corrected.corrections
    assert (kept.element, kept.previous, kept.corrected, kept.corrected_on) == (
        "geboortedatum",
        "2000-05-17",
        "2000-05-18",
        D(2026, 11, 1),
    )


def test_a_death_corrected_then_withdrawn_keeps_both_old_dates() -> None:
    dead = apply(person(), change(Gebeurtenis.OVERLEDEN, D(2026, 11, 1), 4, overlijden=Overlijden(D(2026, 11, 1))))
    moved = apply(
        dead, change(Gebeurtenis.OVERLIJDEN_GECORRIGEERD, D(2026, 11, 2), 5, overlijden=Overlijden(D(2026, 10, 30)))
    )
    alive = apply(moved, change(Gebeurtenis.OVERLIJDEN_GECORRIGEERD, D(2026, 11, 3), 6))
    assert alive.death_date is None
    assert [(c.element, c.previous, c.corrected) for c in alive.corrections] == [
        ("datum_overlijden", "2026-11-01", "2026-10-30"),
        ("datum_overlijden", "2026-10-30", ""),
    ]


def test_the_log_and_the_row_keep_the_history() -> None:
    home = abroad_and_back()
    corrected = apply(home, change(Gebeurtenis.GECORRIGEERD, D(2026, 11, 1), 6, persoon=Persoon(geslacht="O")))
    # The A-nummer is filled in from the BSN when stored.
    corrected = dataclasses.replace(corrected, a_nummer=a_nummer_for_bsn(corrected.bsn))
    assert store.person_from_json(store.person_to_json(corrected)) == corrected
    assert store.state_of(BrpPerson(**store.new_values("s", corrected))) == corrected


def test_the_person_message_carries_the_stays_and_corrections() -> None:
    home = abroad_and_back()
    served = brp_codec.person_message(home)
    [stay] = served.residence_abroad
    assert stay.country_code == "5010" and stay.start_date.day == 20 and stay.end_date.month == 10


def test_an_ended_follow_indication_passes_only_changes_before_its_end() -> None:
    end = D(2027, 8, 1)
    assert follows_change(None, D(2099, 1, 1))
    assert follows_change(end, end - dt.timedelta(days=1))
    assert not follows_change(end, end)


# --- ROD ---


def served(stays: list[tuple[dt.date, dt.date | None]]) -> brp_pb2.Person:
    message = brp_pb2.Person(bsn=person().bsn)
    message.birth_date.year, message.birth_date.month, message.birth_date.day = 2013, 5, 5
    for begin, end in stays:
        stay = message.residence_abroad.add(country_code="5010")
        stay.start_date.year, stay.start_date.month, stay.start_date.day = begin.year, begin.month, begin.day
        if end is not None:
            stay.end_date.year, stay.end_date.month, stay.end_date.day = end.year, end.month, end.day
    return message


def test_rod_takes_the_stays_abroad_from_brp_and_decides_on_where_the_pupil_lived() -> None:
    count = D(2026, 10, 1)
    facts = rod_codec.brp_facts(served([(LEFT, BACK)]))
    assert facts.ended_stays_abroad() == ((LEFT, BACK - dt.timedelta(days=1)),)
    pupil = funding.PersonFacts(facts.birth_date, abroad_before=facts.ended_stays_abroad())
    assert pupil.abroad_on(count) and not pupil.abroad_on(BACK)
    returned_before = rod_codec.brp_facts(served([(D(2026, 9, 1), count)]))
    at_home = funding.PersonFacts(returned_before.birth_date, abroad_before=returned_before.ended_stays_abroad())
    # Back on the count date itself: the day back is spent in the Netherlands, so the count date counts.
    assert not at_home.abroad_on(count) and at_home.abroad_on(count - dt.timedelta(days=1))


@pytest.mark.parametrize(
    ("enrolments", "expected"),
    [
        ([], D(2027, 9, 1)),
        ([(False, None)], None),
        ([(False, D(2027, 7, 31))], D(2027, 8, 1)),
        ([(False, D(2027, 7, 31)), (False, D(2028, 7, 31))], D(2028, 8, 1)),
        ([(False, D(2027, 7, 31)), (False, None)], None),
        ([(True, None)], D(2027, 9, 1)),
        ([(True, None), (False, D(2027, 7, 31))], D(2027, 8, 1)),
    ],
)
def test_rods_follow_indication_ends_with_its_last_enrolment(
    enrolments: list[tuple[bool, dt.date | None]], expected: dt.date | None
) -> None:
    assert rules.follow_end(enrolments, D(2027, 9, 1)) == expected


def test_a_person_without_stays_has_none_in_rods_copy() -> None:
    assert dataclasses.replace(rod_codec.brp_facts(served([])), bsn="").abroad == ()
