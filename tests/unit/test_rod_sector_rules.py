"""ROD's per-sector rules without a server: sector fields, end reasons, the vestiging, configured prikdatums."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from services.common.settings import MAX_CORRECTION_WINDOW_DAYS, Settings, parse_correction_deadlines
from services.rod import funding
from services.rod.funding import Sector
from services.rod.rules import (
    INSTITUTION_UNKNOWN,
    NOT_OFFERED,
    SECTOR_FIELD,
    VESTIGING_REQUIRED,
    Intensity,
    Leerweg,
    PeriodShape,
    SchoolLocations,
    SectorFields,
    StudyMode,
    end_reason_violations,
    located_periods,
    sector_field_violations,
)

MBO = SectorFields(leerweg=Leerweg.BOL, intensity=Intensity.VOLTIJD)
HO = SectorFields(study_mode=StudyMode.DEELTIJD)


def _fields(sector: Sector | None, fields: SectorFields | None = None, first: bool = False) -> list[str]:
    found = sector_field_violations(sector, first_enrolment=first, fields=fields or SectorFields())
    assert all(v.code == SECTOR_FIELD for v in found)
    return [v.field for v in found]


@pytest.mark.parametrize("leerweg", list(Leerweg))
@pytest.mark.parametrize("intensity", list(Intensity))
def test_mbo_accepts_every_leerweg_with_every_intensity(leerweg: Leerweg, intensity: Intensity) -> None:
    assert _fields(Sector.MBO, SectorFields(leerweg=leerweg, intensity=intensity)) == []


def test_mbo_needs_both_fields_and_ho_its_mode_of_study() -> None:
    assert _fields(Sector.MBO) == ["mbo_leerweg", "mbo_intensity"]
    assert _fields(Sector.MBO, SectorFields(leerweg=Leerweg.BBL)) == ["mbo_intensity"]
    assert _fields(Sector.HO) == ["ho_study_mode"]
    assert _fields(Sector.HO, HO, first=True) == []


@pytest.mark.parametrize("sector", [Sector.PO, Sector.VO])
def test_po_and_vo_send_no_sector_field_and_need_none(sector: Sector) -> None:
    assert _fields(sector) == []
    assert _fields(sector, MBO) == ["mbo_leerweg", "mbo_intensity"]
    assert _fields(sector, HO, first=True) == ["ho_first_enrolment", "ho_study_mode"]


def test_a_field_of_the_other_sector_is_refused_with_duos_name_and_value() -> None:
    [mixed] = sector_field_violations(
        Sector.HO, first_enrolment=False, fields=SectorFields(Leerweg.BBL, None, HO.study_mode)
    )
    assert (mixed.field, mixed.keys) == ("mbo_leerweg", (("sector", "HO"), ("leerweg", "BBL")))
    assert _fields(Sector.MBO, SectorFields(Leerweg.BOL, Intensity.DEELTIJD, StudyMode.DUAAL)) == ["ho_study_mode"]
    assert _fields(Sector.MBO, MBO, first=True) == ["ho_first_enrolment"]


def test_nothing_is_checked_before_the_sector_is_known() -> None:
    assert _fields(None, SectorFields(Leerweg.BOL, None, StudyMode.VOLTIJD), first=True) == []


def _reason(sector: Sector, code: str) -> list[str]:
    return [v.code for v in end_reason_violations(sector, code)]


def test_mbo_ends_with_one_of_duos_reden_uitstroom_codes() -> None:
    assert [_reason(Sector.MBO, code) for code in ("01", "08")] == [[], []]
    for wrong in ("", "00", "09", "1", "SBX-UIT-DIPLOMA"):
        assert _reason(Sector.MBO, wrong) == ["SBX-END-REASON"], wrong


@pytest.mark.parametrize("sector", [Sector.PO, Sector.VO, Sector.HO])
def test_other_sectors_may_end_without_a_reason_or_with_the_sandboxs_own(sector: Sector) -> None:
    assert _reason(sector, "") == []
    assert _reason(sector, "SBX-UIT-OVERSTAP") == []
    assert _reason(sector, "01") == ["SBX-END-REASON"]
    assert _reason(sector, "SBX-UIT-NONSENSE") == ["SBX-END-REASON"]


BEGIN = dt.date(2027, 8, 20)


def _shape(location: str = "") -> PeriodShape:
    return PeriodShape(BEGIN, None, location, "BAO", 1)


def test_a_period_with_a_location_is_left_for_rio_to_check() -> None:
    located = located_periods([_shape("100X001")], {})
    assert (located.shapes, located.violations) == ((_shape("100X001"),), [])


@pytest.mark.parametrize("sector", [Sector.PO, Sector.VO])
def test_a_po_or_vo_schools_only_location_is_taken_and_of_several_none_is(sector: Sector) -> None:
    one = located_periods([_shape("100X001"), _shape()], {1: SchoolLocations(sector, ("100X007",))})
    assert ([s.location_code for s in one.shapes], one.sector, one.violations) == (["100X001", "100X007"], sector, [])
    two = located_periods([_shape()], {0: SchoolLocations(sector, ("100X007", "100X008"))})
    [violation] = two.violations
    assert (violation.field, violation.code) == ("periods[0].location_code", VESTIGING_REQUIRED)
    assert dict(violation.keys) == {"begindatum": "2027-08-20", "onderwijslocatiecodes": "100X007,100X008"}
    assert two.shapes == (_shape(),)
    [none] = located_periods([_shape()], {0: SchoolLocations(sector, ())}).violations
    assert none.code == NOT_OFFERED


@pytest.mark.parametrize("sector", [Sector.MBO, Sector.HO])
def test_mbo_and_ho_always_name_the_location(sector: Sector) -> None:
    [violation] = located_periods([_shape()], {0: SchoolLocations(sector, ("100X007",))}).violations
    assert (violation.field, violation.code) == ("periods[0].location_code", SECTOR_FIELD)


def test_an_unknown_school_has_no_location_to_take() -> None:
    [violation] = located_periods([_shape()], {0: SchoolLocations(None, ())}).violations
    assert (violation.field, violation.code) == ("institution_code", INSTITUTION_UNKNOWN)


# --- correction deadlines (prikdatums) from the settings ---


def test_a_configured_deadline_lies_on_or_after_its_count_date_and_within_the_window() -> None:
    assert parse_correction_deadlines(" po:2027-02-01=2027-03-05 , VO:2026-10-01=2026-10-01,") == {
        ("PO", dt.date(2027, 2, 1)): dt.date(2027, 3, 5),
        ("VO", dt.date(2026, 10, 1)): dt.date(2026, 10, 1),
    }
    last = dt.date(2026, 10, 1) + dt.timedelta(days=MAX_CORRECTION_WINDOW_DAYS)
    assert parse_correction_deadlines(f"HO:2026-10-01={last}") == {("HO", dt.date(2026, 10, 1)): last}
    for wrong in (
        f"HO:2026-10-01={last + dt.timedelta(days=1)}",
        "VO:2026-10-01=2026-09-30",
        "XO:2026-10-01=2026-10-15",
        "VO:2026-10-01",
        "VO:2026-10-32=2026-11-01",
        "VO:2026-10-01=2026-10-15,VO:2026-10-01=2026-10-16",
    ):
        with pytest.raises(ValueError):
            parse_correction_deadlines(wrong)
    with pytest.raises(ValidationError):
        Settings(rod_correction_deadlines="VO:2026-10-01=2026-09-30")


def test_a_configured_deadline_moves_the_day_the_count_turns_final() -> None:
    count_date = dt.date(2027, 10, 1)
    assert funding.DEFAULT_CALENDAR.correction_deadline(Sector.VO, count_date) == dt.date(2027, 10, 28)
    calendar = funding.calendar_with_deadlines({("VO", count_date): dt.date(2027, 10, 15)})
    assert not calendar.is_final(Sector.VO, count_date, dt.date(2027, 10, 15))
    assert calendar.is_final(Sector.VO, count_date, dt.date(2027, 10, 16))
    # Only that sector's count date moves: mbo keeps DUO's default.
    assert not calendar.is_final(Sector.MBO, count_date, dt.date(2027, 10, 16))
    with pytest.raises(ValueError, match="not a count date"):
        funding.calendar_with_deadlines({("PO", count_date): dt.date(2027, 10, 15)})
