"""The notice ROD gives a school when BRP changes a pupil's name or birth date (rules.details_changed_notice)."""

from __future__ import annotations

import datetime as dt

from services.rod import rules

BORN = dt.date(2016, 3, 4)
STORED = {"given_names": "Finn", "surname_prefix": "", "surname": "Oudenaam", "birth_date": BORN}


def facts(**changed: object) -> rules.BrpFacts:
    values: dict[str, object] = {"given_names": "Finn", "surname_prefix": "", "surname": "Oudenaam", "birth_date": BORN}
    values.update(changed)
    return rules.BrpFacts(bsn="999999941", death_date=None, emigration_date=None, sequence=1, **values)  # type: ignore[arg-type]


def test_a_changed_surname_or_birth_date_is_told_with_its_new_value() -> None:
    notice = rules.details_changed_notice(STORED, facts(surname="Nieuwenaam", birth_date=dt.date(2015, 3, 4)))
    assert notice is not None and notice.code == "SBX-PUPIL-DETAILS-CHANGED"
    assert dict(notice.parameters) == {"surname": "Nieuwenaam", "birth_date": "2015-03-04"}


def test_nothing_is_told_when_no_personal_detail_changed() -> None:
    assert rules.details_changed_notice(STORED, facts()) is None


def test_a_pupil_stored_without_names_gets_no_name_notice_only_a_birth_date_one() -> None:
    unnamed = {"given_names": "", "surname_prefix": "", "surname": "", "birth_date": BORN}
    assert rules.details_changed_notice(unnamed, facts()) is None
    notice = rules.details_changed_notice(unnamed, facts(birth_date=dt.date(2015, 3, 4)))
    assert notice is not None and dict(notice.parameters) == {"birth_date": "2015-03-04"}
