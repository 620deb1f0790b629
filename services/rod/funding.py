"""Funding rules (bekostigingsregels) of ROD as pure functions: count dates, correction window, ages, conflicts.

Every rule is a named function with its source or reasoning. Nothing here
touches a database or the network: `evaluate_pupil` takes the facts of one
pupil (all enrolments, the person's BRP facts, the previous decisions, today)
and returns the new decision per enrolment per count date, plus the signals
the schools should see.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field


class Sector(enum.StrEnum):
    """Onderwijssector; decides count dates and age limits."""

    PO = "PO"
    VO = "VO"
    MBO = "MBO"
    HO = "HO"


# --- Reason codes a vendor's software can act on (FundingDecision.reason_codes) ---
FUNDED = "FUNDED"
NOT_ENROLLED_ON_COUNT_DATE = "NOT_ENROLLED_ON_COUNT_DATE"
UNDER_AGE = "UNDER_AGE"
OVER_AGE = "OVER_AGE"
SECOND_ENROLMENT = "SECOND_ENROLMENT"
HO_FIRST_ENROLMENT_TWICE = "JK"
DECEASED = "DECEASED"
EMIGRATED = "EMIGRATED"
OFFERING_ENDED = "OFFERING_ENDED"
ENROLMENT_DELETED = "ENROLMENT_DELETED"

# --- Signal codes (Signal.code) ---
SIGNAL_DOUBLE_ENROLMENT = "DUBBELE_INSCHRIJVING"
SIGNAL_DECEASED = "OVERLEDEN"
SIGNAL_EMIGRATED = "GEEMIGREERD"
SIGNAL_OFFERING_ENDED = "OPLEIDING_BEEINDIGD"
SIGNAL_HO_FIRST_ENROLMENT_TWICE = "JK"


# ---------------------------------------------------------------------------
# Count dates (teldatums)
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class CountDateCalendar:
    """Which dates are count dates, per sector and year; configurable so a sandbox can model other years.

    Source: DUO / OCW "vereenvoudiging bekostiging po": since 2023 primary
    schools are funded for a calendar year on the pupils registered on
    1 February of the year before; before that the po count date was
    1 October. (1 October still sets the national po budget, but it does not
    decide a school's funding, so it is not a po count date here.) Secondary,
    mbo and ho count on 1 October (WVO, WEB and WHW bekostigingsbesluiten).
    `overrides` replaces the dates of one sector in one year.
    """

    po_february_from_year: int = 2023
    overrides: Mapping[tuple[Sector, int], tuple[dt.date, ...]] = field(default_factory=dict)

    def count_dates_in_year(self, sector: Sector, year: int) -> tuple[dt.date, ...]:
        override = self.overrides.get((sector, year))
        if override is not None:
            return tuple(sorted(override))
        if sector is Sector.PO and year >= self.po_february_from_year:
            return (dt.date(year, 2, 1),)
        return (dt.date(year, 10, 1),)

    def count_dates_between(self, sector: Sector, first: dt.date, last: dt.date) -> list[dt.date]:
        """Count dates d with first <= d <= last, ascending."""
        return [
            d
            for year in range(first.year, last.year + 1)
            for d in self.count_dates_in_year(sector, year)
            if first <= d <= last
        ]

    def next_count_date(self, sector: Sector, on_or_after: dt.date) -> dt.date:
        """The first count date on or after a date (there is one in every year, so two years always suffice)."""
        return self.count_dates_between(sector, on_or_after, dt.date(on_or_after.year + 2, 12, 31))[0]


DEFAULT_CALENDAR = CountDateCalendar()

# Schools may correct their registrations for four weeks after a count date
# (DUO: "correctieperiode van 4 weken na de teldatum"); then the count is final.
CORRECTION_WINDOW = dt.timedelta(weeks=4)


def correction_deadline(count_date: dt.date) -> dt.date:
    """Last day on which a change still alters the count of `count_date` (the count date + 4 weeks)."""
    return count_date + CORRECTION_WINDOW


def is_final(count_date: dt.date, today: dt.date) -> bool:
    """Status D (definitief) from the day after the correction deadline; V (voorlopig) until then."""
    return today > correction_deadline(count_date)


# ---------------------------------------------------------------------------
# Age limits (leeftijdsgrenzen)
# ---------------------------------------------------------------------------


def age_on(birth_date: dt.date, on: dt.date) -> int:
    """Age in whole years on a date. A birthday counts from the day itself; a person born on
    29 February turns a year older on 1 March in a common year (the day after 28 February)."""
    years = on.year - birth_date.year
    if (on.month, on.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


@dataclass(frozen=True)
class AgeLimit:
    """Funded when minimum <= age on the count date and (maximum is None or age <= maximum)."""

    minimum: int
    maximum: int | None
    why: str


AGE_LIMITS: Mapping[Sector, AgeLimit] = {
    # WPO art. 39: a child may attend primary school from age 4; the school year in which
    # a pupil turns 14 is the last one, so at most 13 on the count date counts.
    Sector.PO: AgeLimit(4, 13, "primary school counts pupils aged 4 to 13"),
    # Sandbox choice: vo starts after primary school (about 12); 10 leaves room for early
    # starters. No upper limit is funded away in vo, but 25 keeps test data honest.
    Sector.VO: AgeLimit(10, 25, "secondary school counts pupils aged 10 to 25"),
    # WEB: compulsory education ends at 16 or a starting qualification; mbo funding follows
    # from 16 on. Sandbox choice: students of 30 and over are not funded (the old bol-rule).
    Sector.MBO: AgeLimit(16, 29, "mbo counts students aged 16 to 29"),
    # WHW has no upper age limit for funding; a student starts ho at 16 at the earliest.
    Sector.HO: AgeLimit(16, None, "higher education counts students from age 16"),
}


def age_reason(sector: Sector, birth_date: dt.date | None, count_date: dt.date) -> str | None:
    """UNDER_AGE, OVER_AGE or None (within limits, or birth date unknown: no reason to refuse)."""
    if birth_date is None:
        return None
    limit = AGE_LIMITS[sector]
    age = age_on(birth_date, count_date)
    if age < limit.minimum:
        return UNDER_AGE
    if limit.maximum is not None and age > limit.maximum:
        return OVER_AGE
    return None


# ---------------------------------------------------------------------------
# Facts in, decisions out
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """One enrolment period (inschrijvingsperiode); end inclusive, None while open."""

    begin: dt.date
    end: dt.date | None
    # Last day the RIO course offering holds, when RIO has ended it (or its location or school).
    offering_end: dt.date | None = None
    # Which RIO record ended it: "offering", "location" or "school"; vendors see it in the signal.
    ended_record: str = "offering"

    def covers(self, day: dt.date) -> bool:
        return self.begin <= day and (self.end is None or day <= self.end)


@dataclass(frozen=True)
class EnrolmentFacts:
    enrolment_id: str
    institution_code: str
    sector: Sector
    periods: tuple[Period, ...]
    # Order of registration: earlier registrations win a double enrolment.
    registered_order: int
    deleted: bool = False

    @property
    def first_begin(self) -> dt.date:
        return min(p.begin for p in self.periods)

    @property
    def last_end(self) -> dt.date | None:
        ends = [p.end for p in self.periods]
        return None if any(e is None for e in ends) else max(e for e in ends if e is not None)

    def period_on(self, day: dt.date) -> Period | None:
        return next((p for p in self.periods if p.covers(day)), None)


@dataclass(frozen=True)
class PersonFacts:
    """What ROD knows of the pupil from BRP (or from the school, for a pupil without BSN)."""

    birth_date: dt.date | None
    death_date: dt.date | None = None
    emigration_date: dt.date | None = None


@dataclass(frozen=True)
class Decision:
    """Funded or not for one count date, and why (codes plus a text)."""

    count_date: dt.date
    funded: bool
    final: bool
    reason_codes: tuple[str, ...]
    reason: str


@dataclass(frozen=True)
class Signal:
    code: str
    text: str
    parameters: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Evaluation:
    """The current decisions (by count date, ascending) and signals for one enrolment."""

    decisions: tuple[Decision, ...]
    signals: tuple[Signal, ...]

    @property
    def has_signals(self) -> bool:
        return bool(self.signals)


_TEXTS = {
    FUNDED: "the school is funded for this pupil on {d}",
    NOT_ENROLLED_ON_COUNT_DATE: "the pupil is not enrolled on the count date {d}",
    UNDER_AGE: "the pupil is younger than {min} on {d}",
    OVER_AGE: "the pupil is older than {max} on {d}",
    SECOND_ENROLMENT: "the pupil's enrolment at {other} counts on {d}; a second enrolment is not funded",
    HO_FIRST_ENROLMENT_TWICE: "first ho enrolments at two institutions at once on {d}: neither is funded",
    DECEASED: "the pupil died on or before {d}",
    EMIGRATED: "the pupil emigrated on or before {d}",
    OFFERING_ENDED: "the course offering ended before {d}",
    ENROLMENT_DELETED: "the enrolment was deleted",
}


_ENDED_RECORD_TEXTS = {
    "offering": "RIO ended the course offering",
    "location": "RIO ended the location where the course is offered",
    "school": "RIO ended the school (onderwijsaanbieder)",
}


def _text(code: str, count_date: dt.date, sector: Sector, other: str = "") -> str:
    limit = AGE_LIMITS[sector]
    return _TEXTS[code].format(d=count_date.isoformat(), min=limit.minimum, max=limit.maximum, other=other)


def relevant_count_dates(
    enrolment: EnrolmentFacts,
    today: dt.date,
    previous: Sequence[dt.date],
    calendar: CountDateCalendar = DEFAULT_CALENDAR,
) -> list[dt.date]:
    """The count dates an enrolment's decision lists.

    Those inside the enrolment whose count is still open (not final today),
    up to the first count date on or after max(today, first begin), so an open
    enrolment lists a bounded set; plus every count date decided before, so a
    decision never silently disappears. A count date that was already final
    before ROD knew of the enrolment is not listed: it never counted there.
    """
    horizon = calendar.next_count_date(enrolment.sector, max(today, enrolment.first_begin))
    last = horizon if enrolment.last_end is None else min(enrolment.last_end, horizon)
    first = max(enrolment.first_begin, today - CORRECTION_WINDOW)
    in_span = calendar.count_dates_between(enrolment.sector, first, last) if first <= last else []
    return sorted(set(in_span) | set(previous))


def ineligibility_reasons(enrolment: EnrolmentFacts, person: PersonFacts, count_date: dt.date) -> tuple[str, ...]:
    """Reasons this enrolment cannot be funded on a count date, whatever other enrolments exist.

    In order: deleted (counts for nothing), not enrolled on the date (end date
    inclusive: an enrolment ending on the count date counts), death or
    emigration on or before the date (BRP; no funding after either), the RIO
    offering ended before the date, and the sector's age limits.
    """
    if enrolment.deleted:
        return (ENROLMENT_DELETED,)
    period = enrolment.period_on(count_date)
    if period is None:
        return (NOT_ENROLLED_ON_COUNT_DATE,)
    reasons: list[str] = []
    if person.death_date is not None and person.death_date <= count_date:
        reasons.append(DECEASED)
    if person.emigration_date is not None and person.emigration_date <= count_date:
        reasons.append(EMIGRATED)
    if period.offering_end is not None and period.offering_end < count_date:
        reasons.append(OFFERING_ENDED)
    age = age_reason(enrolment.sector, person.birth_date, count_date)
    if age is not None:
        reasons.append(age)
    return tuple(reasons)


def _priority(enrolment: EnrolmentFacts) -> tuple[dt.date, int, str]:
    """Who wins a double enrolment: the earliest start, then the earliest registration."""
    return (enrolment.first_begin, enrolment.registered_order, enrolment.enrolment_id)


def ho_first_enrolments(enrolments: Sequence[EnrolmentFacts]) -> list[EnrolmentFacts]:
    """The pupil's first enrolments in higher education: those starting on the pupil's earliest ho start date."""
    ho = [e for e in enrolments if e.sector is Sector.HO and not e.deleted]
    if not ho:
        return []
    first = min(e.first_begin for e in ho)
    return [e for e in ho if e.first_begin == first]


def decide_count_date(
    enrolments: Sequence[EnrolmentFacts], person: PersonFacts, count_date: dt.date, sector: Sector
) -> dict[str, tuple[bool, tuple[str, ...], str]]:
    """Funded or not, with codes and text, for each of the pupil's enrolments in one sector on one count date.

    One funded enrolment per pupil per sector on a count date (DUO: a pupil is
    counted once): of the eligible ones the earliest wins (see `_priority`);
    the others are SECOND_ENROLMENT. In ho, first enrolments at two or more
    institutions at once are all unfunded with code JK (DUO feedback code),
    and any later eligible enrolment may then count.
    """
    result: dict[str, tuple[bool, tuple[str, ...], str]] = {}
    eligible: list[EnrolmentFacts] = []
    for enrolment in enrolments:
        if enrolment.sector is not sector:
            continue
        reasons = ineligibility_reasons(enrolment, person, count_date)
        if reasons:
            result[enrolment.enrolment_id] = (False, reasons, "; ".join(_text(r, count_date, sector) for r in reasons))
        else:
            eligible.append(enrolment)
    if sector is Sector.HO:
        firsts = {e.enrolment_id for e in ho_first_enrolments(enrolments)}
        jk = [e for e in eligible if e.enrolment_id in firsts]
        if len({e.institution_code for e in jk}) >= 2:
            for enrolment in jk:
                text = _text(HO_FIRST_ENROLMENT_TWICE, count_date, sector)
                result[enrolment.enrolment_id] = (False, (HO_FIRST_ENROLMENT_TWICE,), text)
            eligible = [e for e in eligible if e.enrolment_id not in firsts]
    eligible.sort(key=_priority)
    for position, enrolment in enumerate(eligible):
        if position == 0:
            result[enrolment.enrolment_id] = (True, (FUNDED,), _text(FUNDED, count_date, sector))
        else:
            winner = eligible[0].institution_code
            text = _text(SECOND_ENROLMENT, count_date, sector, other=winner)
            result[enrolment.enrolment_id] = (False, (SECOND_ENROLMENT,), text)
    return result


def _signals(
    enrolment: EnrolmentFacts,
    person: PersonFacts,
    decisions: Sequence[Decision],
    conflicts: Mapping[dt.date, list[EnrolmentFacts]],
) -> tuple[Signal, ...]:
    """Signals for the school: a conflict with another enrolment, death, emigration, an ended offering."""
    if enrolment.deleted:
        return ()
    signals: list[Signal] = []
    for decision in decisions:
        if decision.final:
            continue
        others = [o for o in conflicts.get(decision.count_date, []) if o.enrolment_id != enrolment.enrolment_id]
        if not others:
            continue
        codes = ",".join(sorted({o.institution_code for o in others}))
        params: tuple[tuple[str, str], ...] = (
            ("count_date", decision.count_date.isoformat()),
            ("other_institution_code", codes),
        )
        if HO_FIRST_ENROLMENT_TWICE in decision.reason_codes:
            text = f"first ho enrolment also at {codes} on {decision.count_date}: neither is funded"
            signals.append(Signal(SIGNAL_HO_FIRST_ENROLMENT_TWICE, text, params))
        else:
            text = f"the pupil is also enrolled at {codes} on {decision.count_date}"
            signals.append(Signal(SIGNAL_DOUBLE_ENROLMENT, text, params))
    if person.death_date is not None:
        signals.append(
            Signal(
                SIGNAL_DECEASED, f"the pupil died on {person.death_date}", (("date", person.death_date.isoformat()),)
            )
        )
    if person.emigration_date is not None:
        when = (("date", person.emigration_date.isoformat()),)
        signals.append(Signal(SIGNAL_EMIGRATED, f"the pupil emigrated on {person.emigration_date}", when))
    for period in enrolment.periods:
        if period.offering_end is not None and (period.end is None or period.end > period.offering_end):
            ended = (
                ("date", period.offering_end.isoformat()),
                ("period_begin", period.begin.isoformat()),
                ("ended_record", period.ended_record),
            )
            text = f"{_ENDED_RECORD_TEXTS[period.ended_record]} on {period.offering_end}, while the pupil is enrolled"
            signals.append(Signal(SIGNAL_OFFERING_ENDED, text, ended))
    return tuple(signals)


def evaluate_pupil(
    enrolments: Sequence[EnrolmentFacts],
    person: PersonFacts,
    previous: Mapping[str, Sequence[Decision]],
    today: dt.date,
    calendar: CountDateCalendar = DEFAULT_CALENDAR,
) -> dict[str, Evaluation]:
    """The new evaluation of every enrolment of one pupil.

    A decision on a count date whose correction window has closed is final:
    the previous decision is kept (status D) and nothing done today alters it.
    Other count dates are decided afresh from today's facts.
    """
    wanted: dict[str, list[dt.date]] = {}
    for enrolment in enrolments:
        before = [d.count_date for d in previous.get(enrolment.enrolment_id, ())]
        wanted[enrolment.enrolment_id] = (
            list(before) if enrolment.deleted else relevant_count_dates(enrolment, today, before, calendar)
        )
    fresh: dict[tuple[str, dt.date], tuple[bool, tuple[str, ...], str]] = {}
    conflicts: dict[dt.date, list[EnrolmentFacts]] = {}
    for sector in {e.sector for e in enrolments}:
        dates = sorted({d for e in enrolments if e.sector is sector for d in wanted[e.enrolment_id]})
        for count_date in dates:
            outcome = decide_count_date(enrolments, person, count_date, sector)
            for enrolment_id, answer in outcome.items():
                fresh[(enrolment_id, count_date)] = answer
            contenders = [
                e
                for e in enrolments
                if e.sector is sector
                and outcome[e.enrolment_id][1] in ((FUNDED,), (SECOND_ENROLMENT,), (HO_FIRST_ENROLMENT_TWICE,))
            ]
            if len(contenders) >= 2:
                conflicts[count_date] = contenders
    result: dict[str, Evaluation] = {}
    for enrolment in enrolments:
        old = {d.count_date: d for d in previous.get(enrolment.enrolment_id, ())}
        decisions: list[Decision] = []
        for count_date in wanted[enrolment.enrolment_id]:
            kept = old.get(count_date)
            # Once final, always final: moving a sandbox clock back does not reopen a count.
            final = is_final(count_date, today) or (kept is not None and kept.final)
            if final and kept is not None:
                decisions.append(Decision(count_date, kept.funded, True, kept.reason_codes, kept.reason))
                continue
            if final:
                continue
            funded, codes, text = fresh[(enrolment.enrolment_id, count_date)]
            decisions.append(Decision(count_date, funded, False, codes, text))
        result[enrolment.enrolment_id] = Evaluation(tuple(decisions), _signals(enrolment, person, decisions, conflicts))
    return result
