"""The explorer's count-date jumps: the next count date, and the first day its count is final."""

from __future__ import annotations

import datetime as dt

from clients.explorer.examples import count_date_on_or_after, count_to_read, upcoming_count


def test_next_count_date_is_1_february_for_po_and_1_october_for_the_rest() -> None:
    assert count_date_on_or_after(dt.date(2026, 11, 29), primary=True) == dt.date(2027, 2, 1)
    assert count_date_on_or_after(dt.date(2027, 2, 1), primary=True) == dt.date(2027, 2, 1)
    assert count_date_on_or_after(dt.date(2026, 11, 29), primary=False) == dt.date(2027, 10, 1)
    assert count_date_on_or_after(dt.date(2026, 9, 30), primary=False) == dt.date(2026, 10, 1)


def test_the_count_is_final_the_day_after_the_prikdatum() -> None:
    before = upcoming_count(dt.date(2026, 11, 29), primary=True)
    # 1 February 2027 is a Monday: the prikdatum is its 28th day, Sunday 28 February, moved to Monday 1 March.
    assert (before.count_date, before.correction_deadline, before.final_from) == (
        dt.date(2027, 2, 1),
        dt.date(2027, 3, 1),
        dt.date(2027, 3, 2),
    )
    # Inside the window the jump still targets that count; once past it, the next year's.
    assert upcoming_count(dt.date(2027, 3, 1), primary=True).count_date == dt.date(2027, 2, 1)
    assert upcoming_count(dt.date(2027, 3, 2), primary=True).count_date == dt.date(2028, 2, 1)


def test_the_count_to_read_is_the_recent_one_until_two_months_after_it() -> None:
    assert count_to_read(dt.date(2027, 3, 2), primary=True) == dt.date(2027, 2, 1)
    assert count_to_read(dt.date(2026, 11, 29), primary=True) == dt.date(2027, 2, 1)
