"""The sandbox clock: what "now" is in one sandbox, as a pure function of its setting and the real time."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

# The registers are Dutch: "today" (the default peildatum) is the date in Amsterdam.
REGISTER_TIMEZONE = ZoneInfo("Europe/Amsterdam")


@dataclass(frozen=True)
class ClockSetting:
    """How a sandbox's clock relates to real time.

    offset: added to real time while the clock runs.
    frozen_at: when set, the clock stands still at this moment.
    """

    offset: dt.timedelta = dt.timedelta(0)
    frozen_at: dt.datetime | None = None

    def now(self, real_now: dt.datetime) -> dt.datetime:
        if self.frozen_at is not None:
            return self.frozen_at
        return real_now + self.offset

    def today(self, real_now: dt.datetime) -> dt.date:
        return register_date(self.now(real_now))

    @classmethod
    def travel_to(cls, target: dt.datetime, real_now: dt.datetime) -> ClockSetting:
        return cls(offset=target - real_now)

    @classmethod
    def freeze(cls, target: dt.datetime) -> ClockSetting:
        return cls(frozen_at=target)


def register_date(moment: dt.datetime) -> dt.date:
    """The calendar date of a moment as the registers see it (Amsterdam time)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.astimezone(REGISTER_TIMEZONE).date()


def real_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
