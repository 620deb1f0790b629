"""BRP messages as the BRP API names them: event types with their prefix, table 34 countries, A-nummer, version."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from services.brp_sync import xml_codec
from services.brp_sync.rules import (
    Address,
    Emigratie,
    Gebeurtenis,
    Mutatie,
    Overlijden,
    PersonState,
    Persoon,
    RuleViolationError,
    Verblijfplaats,
    apply,
)
from services.common import identifiers
from services.common.identifiers import a_nummer_for_bsn, is_valid_a_nummer

BSN = "999990019"
DAY = dt.date(2026, 11, 28)
AMSTERDAM = Address("Damrak", 1, "1012LG", "Amsterdam", "0363")
SANNE = PersonState(BSN, "Sanne", "", "Berg", dt.date(2010, 5, 17), "V", AMSTERDAM, a_nummer=a_nummer_for_bsn(BSN))


def message(event: Gebeurtenis, **data: object) -> Mutatie:
    return Mutatie("00000000-0000-4000-8000-000000000001", BSN, 1, "0363", event, DAY, **data)  # type: ignore[arg-type]


def roundtrip(mutatie: Mutatie) -> tuple[Mutatie, etree._Element]:
    element = xml_codec.encode(mutatie)
    assert xml_codec.schema_errors(element) == []
    return xml_codec.decode(element), element


def test_every_event_has_the_brp_api_prefix_and_the_named_ones_their_spec_names() -> None:
    assert all(kind.value.startswith("nl.brp.") for kind in Gebeurtenis)
    names = {kind.value for kind in Gebeurtenis}
    for spec in (
        "nl.brp.verhuisd.binnengemeentelijk",
        "nl.brp.verhuisd.intergemeentelijk",
        "nl.brp.verhuisd.naar-buitenland",
        "nl.brp.overleden",
        "nl.brp.overlijden-gecorrigeerd",
    ):
        assert spec in names


@pytest.mark.parametrize(
    ("kind", "subject"), [(Gebeurtenis.GEBOORTE, "geboorte"), (Gebeurtenis.IMMIGRATIE, "immigratie")]
)
def test_births_and_immigrations_are_nl_brp_ingeschreven_with_a_subject(kind: Gebeurtenis, subject: str) -> None:
    persoon = Persoon("Noor", "", "Bakker", DAY, "V")
    decoded, element = roundtrip(
        message(kind, persoon=persoon, verblijfplaats=Verblijfplaats("A", 1, "1012AB", "X", "0363"))
    )
    assert element.findtext(f"{{{xml_codec.NAMESPACE}}}Gebeurtenis") == "nl.brp.ingeschreven"
    assert element.findtext(f"{{{xml_codec.NAMESPACE}}}Onderwerp") == subject
    assert decoded.gebeurtenis is kind


def test_ingeschreven_without_its_subject_is_refused_by_name() -> None:
    element = xml_codec.encode(message(Gebeurtenis.GEBOORTE, persoon=Persoon("Noor", "", "Bakker", DAY, "V")))
    subject = element.find(f"{{{xml_codec.NAMESPACE}}}Onderwerp")
    assert subject is not None
    element.remove(subject)
    assert xml_codec.schema_errors(element) == []
    with pytest.raises(RuleViolationError) as refused:
        xml_codec.decode(element)
    assert refused.value.code == "SBX-BRP-MISSING-ELEMENT" and "Onderwerp" in refused.value.reason


def test_each_message_names_the_record_a_nummer_and_version() -> None:
    decoded, _ = roundtrip(message(Gebeurtenis.OVERLEDEN, overlijden=Overlijden(DAY)))
    assert decoded.a_nummer == a_nummer_for_bsn(BSN) and is_valid_a_nummer(decoded.a_nummer)
    assert decoded.versienummer == 1
    after = apply(SANNE, decoded)
    assert after.versienummer == 1 and after.a_nummer == SANNE.a_nummer


def test_a_births_record_starts_at_version_0_and_rises_with_each_change() -> None:
    birth = message(
        Gebeurtenis.GEBOORTE,
        persoon=Persoon("Noor", "", "Bakker", DAY, "V"),
        verblijfplaats=Verblijfplaats("A", 1, "1012AB", "Amsterdam", "0363"),
    )
    born = apply(None, roundtrip(birth)[0])
    assert born.versienummer == 0 and born.a_nummer == a_nummer_for_bsn(BSN)
    moved = apply(
        born,
        dataclasses.replace(
            message(Gebeurtenis.VERHUISD_BINNEN, verblijfplaats=Verblijfplaats("B", 2, "1012AB", "Amsterdam", "0363")),
            volgnummer=2,
            versienummer=1,
        ),
    )
    assert moved.versienummer == 1


def test_another_records_a_nummer_or_an_old_version_is_refused() -> None:
    with pytest.raises(RuleViolationError) as wrong:
        apply(SANNE, message(Gebeurtenis.OVERLEDEN, overlijden=Overlijden(DAY), a_nummer=a_nummer_for_bsn("999990020")))
    assert wrong.value.code == "SBX-BRP-ANUMMER-MISMATCH"
    older = dataclasses.replace(SANNE, versienummer=5)
    with pytest.raises(RuleViolationError) as stale:
        apply(older, message(Gebeurtenis.OVERLEDEN, overlijden=Overlijden(DAY), versienummer=5))
    assert stale.value.code == "SBX-BRP-STALE-VERSION"


def test_a_nummers_follow_the_brp_api_pattern_and_differ_per_bsn() -> None:
    numbers = [a_nummer_for_bsn(b) for b in identifiers.test_bsns()]
    assert len(set(numbers)) == len(numbers)
    assert all(is_valid_a_nummer(n) for n in numbers)
    assert not is_valid_a_nummer("1123456789")  # a digit twice in a row
    assert not is_valid_a_nummer("0123456789")  # starts with 0


@pytest.mark.parametrize(("given", "stored"), [("9089", "9089"), ("DE", "9089"), ("BE", "5010"), ("5002", "5002")])
def test_countries_are_table_34_codes_with_iso_letters_as_an_alias(given: str, stored: str) -> None:
    after = apply(SANNE, roundtrip(message(Gebeurtenis.EMIGRATIE, emigratie=Emigratie(given, DAY)))[0])
    assert after.emigration_country_code == stored and after.address is None


@pytest.mark.parametrize(
    ("land", "code"),
    [("6030", "SBX-BRP-INVALID-COUNTRY"), ("0000", "SBX-BRP-INVALID-COUNTRY"), ("XX", "SBX-BRP-UNKNOWN-COUNTRY")],
)
def test_netherlands_unknown_and_unaliased_countries_are_no_move_abroad(land: str, code: str) -> None:
    with pytest.raises(RuleViolationError) as refused:
        apply(SANNE, message(Gebeurtenis.EMIGRATIE, emigratie=Emigratie(land, DAY)))
    assert refused.value.code == code


def test_a_death_can_be_corrected_or_withdrawn() -> None:
    dead = apply(SANNE, message(Gebeurtenis.OVERLEDEN, overlijden=Overlijden(DAY)))
    corrected = apply(
        dead,
        dataclasses.replace(
            message(Gebeurtenis.OVERLIJDEN_GECORRIGEERD, overlijden=Overlijden(DAY - dt.timedelta(days=2))),
            volgnummer=2,
        ),
    )
    assert corrected.death_date == DAY - dt.timedelta(days=2) and corrected.versienummer == 2
    alive = apply(corrected, dataclasses.replace(message(Gebeurtenis.OVERLIJDEN_GECORRIGEERD), volgnummer=3))
    assert alive.death_date is None and alive.is_resident
    with pytest.raises(RuleViolationError) as nothing:
        apply(SANNE, message(Gebeurtenis.OVERLIJDEN_GECORRIGEERD))
    assert nothing.value.code == "SBX-BRP-NOT-DECEASED"


def test_xmllint_accepts_every_kind_the_codec_writes(tmp_path: Path) -> None:
    if shutil.which("xmllint") is None:
        pytest.skip("xmllint missing: `make test` installs libxml2-utils")
    messages = [
        message(
            Gebeurtenis.GEBOORTE,
            persoon=Persoon("Noor", "", "Bakker", DAY, "V"),
            verblijfplaats=Verblijfplaats("A", 1, "1012AB", "Amsterdam", "0363"),
        ),
        message(Gebeurtenis.EMIGRATIE, emigratie=Emigratie("9089", DAY)),
        message(Gebeurtenis.OVERLIJDEN_GECORRIGEERD),
        message(Gebeurtenis.OVERLIJDEN_GECORRIGEERD, overlijden=Overlijden(DAY)),
    ]
    path = tmp_path / "kinds.xml"
    path.write_bytes(xml_codec.batch_document(messages))
    checked = subprocess.run(
        ["xmllint", "--noout", "--schema", str(xml_codec.SCHEMA_PATH), str(path)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr


def test_peek_reads_the_first_id_and_bsn_of_a_message_that_may_be_invalid() -> None:
    def peek(children: str) -> tuple[str, str]:
        return xml_codec.peek(etree.fromstring(f'<Mutatie xmlns="{xml_codec.NAMESPACE}">{children}</Mutatie>'))

    assert peek("<BerichtId> a </BerichtId><Burgerservicenummer>999990019</Burgerservicenummer>") == (
        "a",
        "999990019",
    )
    # Order, repeats, absence, other namespaces and overlong values, as find() and the old peeks read them.
    assert peek("<Burgerservicenummer>1234567890</Burgerservicenummer><X/><BerichtId/><BerichtId>b</BerichtId>") == (
        "",
        "123456789",
    )
    assert peek(f'<BerichtId xmlns="urn:other">x</BerichtId><BerichtId>{"c" * 120}</BerichtId>') == ("c" * 100, "")
    assert peek("") == ("", "")
