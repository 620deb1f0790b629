"""ROD's period checks on their boundaries: birth date, the sector's year range, a start too far ahead."""

from __future__ import annotations

import datetime as dt

import pytest

from services.common import codes
from services.rod import rules
from services.rod.funding import Sector
from services.rod.rules import PeriodShape

TODAY = dt.date(2026, 11, 29)
BORN = dt.date(2022, 3, 14)


def period(begin: dt.date, year: int = 0) -> PeriodShape:
    return PeriodShape(begin=begin, end=None, location_code="100X001", course_code="BAO", year=year)


def refused(
    *periods: PeriodShape, sector: Sector | None = Sector.PO, born: dt.date | None = BORN, today: dt.date = TODAY
) -> list[tuple[str, str]]:
    violations = rules.period_violations(periods, sector=sector, birth_date=born, today=today)
    return [(v.field, v.code) for v in violations]


def test_the_codes_are_the_tables_and_the_sandboxs_own() -> None:
    for code in (rules.BEGIN_BEFORE_BIRTH, rules.YEAR_OUT_OF_RANGE, rules.BEGIN_TOO_FAR_AHEAD):
        entry = codes.describe(code)
        assert entry is not None and entry.sandbox_own and entry.kind == "refusal"


def test_a_period_may_begin_on_the_birth_date_but_not_the_day_before() -> None:
    assert refused(period(BORN)) == []
    assert refused(period(BORN - dt.timedelta(days=1))) == [("periods[0].begin_date", "SBX-BEGIN-BEFORE-BIRTH")]
    # Without a known birth date (an onderwijsnummer ROD holds no date for) nothing is refused.
    assert refused(period(dt.date(2000, 1, 1)), born=None) == []


def test_the_birth_date_refusal_names_both_dates() -> None:
    [violation] = rules.period_violations(
        [period(dt.date(2022, 3, 13))], sector=Sector.PO, birth_date=BORN, today=TODAY
    )
    assert dict(violation.keys) == {"begindatum": "2022-03-13", "geboortedatum": "2022-03-14"}


@pytest.mark.parametrize(
    ("sector", "low", "high"), [(Sector.PO, 1, 8), (Sector.VO, 1, 6), (Sector.MBO, 1, 4), (Sector.HO, 1, 8)]
)
def test_each_sector_accepts_its_years_and_not_one_beyond(sector: Sector, low: int, high: int) -> None:
    begin = dt.date(2026, 8, 1)
    for year in (0, low, high):
        assert refused(period(begin, year), sector=sector) == [], year
    for year in (low - 1 if low > 1 else -1, high + 1):
        assert refused(period(begin, year), sector=sector) == [("periods[0].year", "SBX-YEAR-OUT-OF-RANGE")], year


def test_the_year_is_checked_in_every_period() -> None:
    assert refused(period(dt.date(2025, 8, 1), 7), period(dt.date(2026, 8, 1), 9)) == [
        ("periods[1].year", "SBX-YEAR-OUT-OF-RANGE")
    ]


def test_a_period_may_begin_a_year_after_today_but_not_a_day_later() -> None:
    assert refused(period(dt.date(2027, 11, 29))) == []
    assert refused(period(dt.date(2027, 11, 30))) == [("periods[0].begin_date", "SBX-BEGIN-TOO-FAR-AHEAD")]
    # On 29 February the year ahead ends on 28 February.
    leap = dt.date(2028, 2, 29)
    assert refused(period(dt.date(2029, 2, 28)), today=leap) == []
    assert refused(period(dt.date(2029, 3, 1)), today=leap) == [("periods[0].begin_date", "SBX-BEGIN-TOO-FAR-AHEAD")]
