"""BRP apply rules, one kind of change at a time: the person after the message, or the reason it is refused."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from services.brp_sync.rules import (
    Address,
    Emigratie,
    Gebeurtenis,
    HuwelijkPartnerschap,
    MaritalStatus,
    Mutatie,
    Overlijden,
    PersonState,
    Persoon,
    RuleViolationError,
    SequenceDecision,
    StayAbroad,
    Verblijfplaats,
    apply,
    evolve,
    sequence_decision,
)

BSN = "999990019"
TODAY = dt.date(2026, 11, 28)
AMSTERDAM = Address("Damrak", 1, "1012LG", "Amsterdam", "0363")


def person(**changes: object) -> PersonState:
    base = PersonState(
        bsn=BSN,
        given_names="Sanne",
        surname_prefix="van der",
        surname="Berg",
        birth_date=dt.date(2000, 5, 17),
        sex="V",
        address=AMSTERDAM,
        last_sequence=3,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def message(event: Gebeurtenis, *, sequence: int = 4, **categories: object) -> Mutatie:
    return Mutatie(
        bericht_id="00000000-0000-4000-8000-000000000001",
        bsn=BSN,
        volgnummer=sequence,
        gemeentecode="0363",
        gebeurtenis=event,
        datum_ingang=TODAY,
        **categories,  # type: ignore[arg-type]
    )


def address(code: str = "0363", street: str = "Kalverstraat") -> Verblijfplaats:
    city = {"0363": "Amsterdam", "0599": "Rotterdam"}[code]
    return Verblijfplaats(street, 12, "1012PA" if code == "0363" else "3011AA", city, code, "A")


def test_birth_registers_a_new_person_at_sequence_one() -> None:
    born = apply(
        None,
        message(
            Gebeurtenis.GEBOORTE,
            sequence=1,
            persoon=Persoon("Daan", "de", "Vries", TODAY, "M"),
            verblijfplaats=address(),
        ),
    )
    assert (born.given_names, born.surname_prefix, born.surname, born.birth_date, born.sex) == (
        "Daan",
        "de",
        "Vries",
        TODAY,
        "M",
    )
    assert born.address is not None and born.address.street == "Kalverstraat"
    assert born.marital_status is MaritalStatus.ONGEHUWD and born.last_sequence == 1


def test_birth_without_birth_date_or_for_a_known_person_is_refused() -> None:
    incomplete = message(
        Gebeurtenis.GEBOORTE, sequence=1, persoon=Persoon("Daan", None, "Vries", None, "M"), verblijfplaats=address()
    )
    with pytest.raises(RuleViolationError) as missing:
        apply(None, incomplete)
    assert missing.value.code == "SBX-BRP-MISSING-ELEMENT" and "Geboortedatum" in missing.value.reason
    with pytest.raises(RuleViolationError) as exists:
        apply(person(), dataclasses.replace(incomplete, persoon=Persoon("D", None, "V", TODAY, "M")))
    assert exists.value.code == "SBX-BRP-PERSON-EXISTS"


def test_move_within_the_municipality_changes_the_address_only() -> None:
    after = apply(person(), message(Gebeurtenis.VERHUISD_BINNEN, verblijfplaats=address("0363")))
    assert after.address == Address("Kalverstraat", 12, "1012PA", "Amsterdam", "0363", "A")
    assert after.last_sequence == 4 and after.surname == "Berg"


def test_move_within_to_another_municipality_is_refused_naming_the_element() -> None:
    with pytest.raises(RuleViolationError) as refused:
        apply(person(), message(Gebeurtenis.VERHUISD_BINNEN, verblijfplaats=address("0599")))
    assert (
        refused.value.code == "SBX-BRP-MUNICIPALITY-MISMATCH" and "Verblijfplaats/Gemeentecode" in refused.value.reason
    )


def test_move_to_another_municipality() -> None:
    move = dataclasses.replace(
        message(Gebeurtenis.VERHUISD_BUITEN, verblijfplaats=address("0599")), gemeentecode="0599"
    )
    after = apply(person(), move)
    assert after.address is not None and after.address.municipality_code == "0599"
    assert after.address.city == "Rotterdam"


def test_emigration_ends_the_address_and_records_country_and_date() -> None:
    left = dt.date(2026, 11, 20)
    after = apply(person(), message(Gebeurtenis.EMIGRATIE, emigratie=Emigratie("BE", left)))
    # The ISO alias BE is stored as table 34's code for België.
    assert after.address is None and after.emigration_date == left and after.emigration_country_code == "5010"
    assert not after.is_resident
    with pytest.raises(RuleViolationError) as again:
        apply(after, message(Gebeurtenis.VERHUISD_BINNEN, sequence=5, verblijfplaats=address()))
    assert again.value.code == "SBX-BRP-PERSON-EMIGRATED"


def test_immigration_of_a_returning_emigrant_restores_the_address() -> None:
    emigrant = person(address=None, emigration_date=dt.date(2025, 1, 1), emigration_country_code="DE")
    after = apply(emigrant, message(Gebeurtenis.IMMIGRATIE, verblijfplaats=address()))
    assert after.is_resident and after.address is not None and after.emigration_country_code == ""
    with pytest.raises(RuleViolationError) as resident:
        apply(person(), message(Gebeurtenis.IMMIGRATIE, verblijfplaats=address()))
    assert resident.value.code == "SBX-BRP-ALREADY-RESIDENT"


def test_immigration_of_a_new_person_needs_the_whole_persoon() -> None:
    newcomer = apply(
        None,
        message(
            Gebeurtenis.IMMIGRATIE,
            sequence=1,
            persoon=Persoon("Ana", "", "Silva", dt.date(2012, 3, 4), "V"),
            verblijfplaats=address(),
        ),
    )
    assert newcomer.surname == "Silva" and newcomer.birth_date == dt.date(2012, 3, 4)


def test_death_sets_the_date_and_only_corrections_may_follow() -> None:
    died = dt.date(2026, 11, 27)
    after = apply(person(), message(Gebeurtenis.OVERLEDEN, overlijden=Overlijden(died, "0363")))
    assert after.death_date == died and not after.is_resident
    with pytest.raises(RuleViolationError) as moved:
        apply(after, message(Gebeurtenis.VERHUISD_BINNEN, sequence=5, verblijfplaats=address()))
    assert moved.value.code == "SBX-BRP-PERSON-DECEASED"
    corrected = apply(
        after, message(Gebeurtenis.GECORRIGEERD, sequence=5, persoon=Persoon(geboortedatum=dt.date(2000, 5, 18)))
    )
    assert corrected.birth_date == dt.date(2000, 5, 18) and corrected.death_date == died


def test_marriage_and_partnership_then_divorce_and_widowhood() -> None:
    married = apply(
        person(),
        message(Gebeurtenis.VERBINTENIS_AANGEGAAN, huwelijk=HuwelijkPartnerschap("H", "999990020", TODAY)),
    )
    assert married.marital_status is MaritalStatus.GEHUWD and married.partner_bsn == "999990020"
    partners = apply(
        person(), message(Gebeurtenis.VERBINTENIS_AANGEGAAN, huwelijk=HuwelijkPartnerschap("P", None, TODAY))
    )
    assert partners.marital_status is MaritalStatus.PARTNERSCHAP
    with pytest.raises(RuleViolationError) as twice:
        apply(
            married,
            message(Gebeurtenis.VERBINTENIS_AANGEGAAN, sequence=5, huwelijk=HuwelijkPartnerschap("H", None, TODAY)),
        )
    assert twice.value.code == "SBX-BRP-ALREADY-IN-UNION"
    divorced = apply(
        married,
        message(
            Gebeurtenis.VERBINTENIS_ONTBONDEN, sequence=5, huwelijk=HuwelijkPartnerschap("H", None, None, TODAY, "S")
        ),
    )
    assert divorced.marital_status is MaritalStatus.GESCHEIDEN and divorced.partner_bsn is None
    widowed = apply(
        married,
        message(
            Gebeurtenis.VERBINTENIS_ONTBONDEN, sequence=5, huwelijk=HuwelijkPartnerschap("H", None, None, TODAY, "O")
        ),
    )
    assert widowed.marital_status is MaritalStatus.WEDUWE


def test_nobody_marries_before_eighteen_and_divorce_needs_a_marriage() -> None:
    child = person(birth_date=dt.date(2012, 1, 1))
    with pytest.raises(RuleViolationError) as young:
        apply(child, message(Gebeurtenis.VERBINTENIS_AANGEGAAN, huwelijk=HuwelijkPartnerschap("H", None, TODAY)))
    assert young.value.code == "SBX-BRP-TOO-YOUNG"
    with pytest.raises(RuleViolationError) as single:
        apply(
            person(),
            message(Gebeurtenis.VERBINTENIS_ONTBONDEN, huwelijk=HuwelijkPartnerschap("H", None, None, TODAY, "S")),
        )
    assert single.value.code == "SBX-BRP-NOT-IN-UNION"


def test_name_change_keeps_what_the_message_leaves_out() -> None:
    after = apply(
        person(), message(Gebeurtenis.NAAM_GEWIJZIGD, persoon=Persoon(voorvoegsel="", geslachtsnaam="Jansen"))
    )
    assert (after.given_names, after.surname_prefix, after.surname) == ("Sanne", "", "Jansen")
    with pytest.raises(RuleViolationError) as empty:
        apply(person(), message(Gebeurtenis.NAAM_GEWIJZIGD, persoon=Persoon(geboortedatum=TODAY)))
    assert empty.value.code == "SBX-BRP-MISSING-ELEMENT"


def test_correction_of_birth_date_and_sex() -> None:
    after = apply(
        person(), message(Gebeurtenis.GECORRIGEERD, persoon=Persoon(geboortedatum=dt.date(2001, 5, 17), geslacht="O"))
    )
    assert after.birth_date == dt.date(2001, 5, 17) and after.sex == "O" and after.surname == "Berg"


def test_unknown_person_cannot_move() -> None:
    with pytest.raises(RuleViolationError) as unknown:
        apply(None, message(Gebeurtenis.VERHUISD_BINNEN, sequence=1, verblijfplaats=address()))
    assert unknown.value.code == "SBX-BRP-PERSON-UNKNOWN"


@pytest.mark.parametrize(
    ("last", "incoming", "decision"),
    [
        (0, 1, SequenceDecision.APPLY),
        (3, 4, SequenceDecision.APPLY),
        (3, 6, SequenceDecision.HOLD),
        (3, 3, SequenceDecision.STALE),
        (3, 1, SequenceDecision.STALE),
    ],
)
def test_sequence_decision(last: int, incoming: int, decision: SequenceDecision) -> None:
    assert sequence_decision(last, incoming) is decision


def test_evolve_makes_what_dataclasses_replace_makes_and_refuses_an_unknown_field() -> None:
    before = person(abroad=(StayAbroad("5010", dt.date(2020, 1, 1)),))
    changes: dict[str, object] = {"address": None, "last_sequence": 9, "marital_status": MaritalStatus.GEHUWD}
    after = evolve(before, **changes)
    assert after == dataclasses.replace(before, **changes)  # type: ignore[arg-type]
    assert type(after) is PersonState and after is not before and before.last_sequence == 3
    assert hash(after) == hash(dataclasses.replace(before, **changes))  # type: ignore[arg-type]
    with pytest.raises(dataclasses.FrozenInstanceError):
        after.last_sequence = 1  # type: ignore[misc]
    with pytest.raises(TypeError, match="no field lastsequence"):
        evolve(before, lastsequence=9)
