"""Identification as DUO does it: the BSN of the one BRP person the school's details describe, else none."""

from __future__ import annotations

import datetime as dt

from services.rod import rules
from services.rod.rules import BrpFacts, PupilDetails

BORN = dt.date(2021, 5, 17)
MALE, FEMALE = 1, 2


def details(given: str = "Sam", surname: str = "Jansen", sex: int = MALE, born: dt.date = BORN) -> PupilDetails:
    return PupilDetails(given, "", surname, born, sex, "1012AB", 3, "")


def person(bsn: str, given: str = "Sam", sex: int = MALE, born: dt.date = BORN, prefix: str = "") -> BrpFacts:
    return BrpFacts(bsn, born, None, None, 1, given_names=given, surname_prefix=prefix, surname="Jansen", sex=sex)


def test_exactly_one_match_gives_its_bsn_ignoring_case_and_spacing() -> None:
    assert rules.bsn_from_brp(details(" sam ", "JANSEN"), [person("999990019")]) == "999990019"


def test_no_candidate_or_no_match_gives_none() -> None:
    assert rules.bsn_from_brp(details(), []) is None
    assert rules.bsn_from_brp(details(given="Sem"), [person("999990019")]) is None
    assert rules.bsn_from_brp(details(), [person("999990019", prefix="van")]) is None
    assert rules.bsn_from_brp(details(), [person("999990019", born=BORN + dt.timedelta(days=1))]) is None


def test_the_sex_must_agree_unless_either_side_leaves_it_unspecified() -> None:
    assert rules.bsn_from_brp(details(sex=FEMALE), [person("999990019")]) is None
    assert rules.bsn_from_brp(details(sex=0), [person("999990019")]) == "999990019"
    assert rules.bsn_from_brp(details(), [person("999990019", sex=0)]) == "999990019"


def test_two_matches_are_ambiguous_but_one_among_others_is_found() -> None:
    assert rules.bsn_from_brp(details(), [person("999990019"), person("999990020")]) is None
    assert rules.bsn_from_brp(details(), [person("999990019"), person("999990020", given="Noor")]) == "999990019"
