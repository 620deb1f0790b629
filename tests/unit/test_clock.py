"""The sandbox clock: real time, travel and freeze, and the Amsterdam date as "today"."""

from __future__ import annotations

import datetime as dt

from services.common.clock import ClockSetting, register_date

REAL = dt.datetime(2026, 9, 30, 21, 30, tzinfo=dt.UTC)


def test_default_clock_follows_real_time() -> None:
    assert ClockSetting().now(REAL) == REAL


def test_travel_keeps_advancing_from_the_target() -> None:
    setting = ClockSetting.travel_to(dt.datetime(2027, 2, 1, 9, tzinfo=dt.UTC), REAL)
    assert setting.now(REAL) == dt.datetime(2027, 2, 1, 9, tzinfo=dt.UTC)
    assert setting.now(REAL + dt.timedelta(hours=2)) == dt.datetime(2027, 2, 1, 11, tzinfo=dt.UTC)


def test_frozen_clock_stands_still() -> None:
    target = dt.datetime(2026, 10, 1, 8, tzinfo=dt.UTC)
    setting = ClockSetting.freeze(target)
    assert setting.now(REAL) == setting.now(REAL + dt.timedelta(days=3)) == target


def test_today_is_the_amsterdam_date() -> None:
    # 21:30 UTC on 30 September is 23:30 in Amsterdam (CEST): still the 30th.
    assert register_date(REAL) == dt.date(2026, 9, 30)
    # 22:30 UTC is 00:30 on 1 October in Amsterdam: the count date has begun.
    assert register_date(REAL + dt.timedelta(hours=1)) == dt.date(2026, 10, 1)
