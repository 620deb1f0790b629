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

from services.common.codes import known
from services.common.settings import MAX_CORRECTION_WINDOW_DAYS


class Sector(enum.StrEnum):
    """Onderwijssector; decides count dates and age limits."""

    PO = "PO"
    VO = "VO"
    MBO = "MBO"
    HO = "HO"


# --- Funding signals a vendor's software can act on (FundingDecision.reason_codes); see services/common/codes.toml ---
FUNDED = known("SBX-FUNDED")
NOT_ENROLLED_ON_COUNT_DATE = known("SBX-NOT-ENROLLED-ON-COUNT-DATE")
PO_UNDER_4 = known("SBX-PO-UNDER-4")
PO_PAST_14 = known("SBX-PO-PAST-14")
OUTSIDE_SANDBOX_AGE_LIMIT = known("SBX-AGE-LIMIT")
SECOND_ENROLMENT = known("SBX-SECOND-ENROLMENT")
HO_FIRST_ENROLMENT_TWICE = known("SBX-FIRST-ENROLMENT-TWICE")
DECEASED = known("SBX-DECEASED")
EMIGRATED = known("SBX-ABROAD")
OFFERING_ENDED = known("SBX-OFFERING-ENDED")
ENROLMENT_DELETED = known("SBX-ENROLMENT-DELETED")

# --- DUO's funding statuses (FundingDecision.status_code) ---
STATUS_PROVISIONAL = known("V")
STATUS_FINAL = known("D")
# DUO: double first enrolments in ho keep status JK, provisional, until the institutions resolve them.
STATUS_JK = known("JK")

# --- Notices (Signal.code) ---
SIGNAL_DOUBLE_ENROLMENT = known("SBX-DOUBLE-ENROLMENT")
SIGNAL_DECEASED = known("SBX-PUPIL-DECEASED")
SIGNAL_EMIGRATED = known("SBX-PUPIL-ABROAD")
SIGNAL_OFFERING_ENDED = known("SBX-COURSE-ENDED")
SIGNAL_HO_FIRST_ENROLMENT_TWICE = known("SBX-FIRST-ENROLMENT-ELSEWHERE")


# ---------------------------------------------------------------------------
# Count dates (teldatums)
# ---------------------------------------------------------------------------


def duo_correction_deadline(count_date: dt.date) -> dt.date:
    """DUO's practice for the last day to correct a count (prikdatum): "binnen 4 weken na" the count date.

    Source: DUO, "Controleer uiterlijk 3 maart de gegevens voor uw bekostiging"
    (duo.nl/zakelijk/primair-onderwijs/nieuws/controleer-uiterlijk-3-maart-de-gegevens-voor-uw-bekostiging.jsp):
    registrations must be in ROD within 4 weeks after 1 February; because
    1 February 2025 fell in a weekend the deadline moved to Monday 3 March 2025.
    PO-Raad (2023): "uiterlijk 28 februari 2023" for the 1 February 2023 count.
    Both follow from: the four weeks start on the first working day on or
    after the count date (its 28th day is the last), and a deadline in a
    weekend moves to the Monday after.
    """
    start = _next_working_day(count_date)
    return _next_working_day(start + dt.timedelta(days=27))


def _next_working_day(day: dt.date) -> dt.date:
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


@dataclass(frozen=True)
class CountDateCalendar:
    """Which dates are count dates, and their correction deadlines, per sector and year; configurable.

    Source: primary schools count on 1 February for the next calendar year's
    funding from 1 February 2022 on ("Sinds 2022 is 1 februari wettelijk de
    nieuwe officiële teldatum ... Op basis daarvan wordt in het volgende
    kalenderjaar bekostiging toegekend", vbs.nl, "Waarom is 1 februari zo
    belangrijk?", following OCW's "vereenvoudiging bekostiging po"); before
    2022 the po count date was 1 October. Secondary, mbo and ho count on
    1 October (WVO, WEB and WHW bekostigingsbesluiten). `overrides` replaces
    the dates of one sector in one year; `deadlines` replaces the correction
    deadline of one sector's count date (default: `duo_correction_deadline`,
    DUO's practice for po, which the sandbox applies to every sector).
    """

    po_february_from_year: int = 2022
    overrides: Mapping[tuple[Sector, int], tuple[dt.date, ...]] = field(default_factory=dict)
    deadlines: Mapping[tuple[Sector, dt.date], dt.date] = field(default_factory=dict)

    def count_dates_in_year(self, sector: Sector, year: int) -> tuple[dt.date, ...]:
        override = self.overrides.get((sector, year))
        if override is not None:
            return tuple(sorted(override))
        if sector is Sector.PO and year >= self.po_february_from_year:
            return (dt.date(year, 2, 1),)
        return (dt.date(year, 10, 1),)

    def is_count_date(self, sector: Sector, day: dt.date) -> bool:
        return day in self.count_dates_in_year(sector, day.year)

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

    def correction_deadline(self, sector: Sector, count_date: dt.date) -> dt.date:
        """The prikdatum: the last day on which a change still alters the count of `count_date`."""
        return self.deadlines.get((sector, count_date)) or duo_correction_deadline(count_date)

    def is_final(self, sector: Sector, count_date: dt.date, today: dt.date) -> bool:
        """Status D (definitief) from the day after the correction deadline; V (voorlopig) until then."""
        return today > self.correction_deadline(sector, count_date)


DEFAULT_CALENDAR = CountDateCalendar()

# No correction deadline lies further than this after its count date (four weeks plus two weekends, and
# no configured deadline either: services.common.settings checks it).
LONGEST_WINDOW = dt.timedelta(days=MAX_CORRECTION_WINDOW_DAYS)


def calendar_with_deadlines(deadlines: Mapping[tuple[str, dt.date], dt.date]) -> CountDateCalendar:
    """The default calendar with configured correction deadlines (REGISTRY_ROD_CORRECTION_DEADLINES).

    DUO sets the prikdatum per sector and count date (for 1 February 2025 it moved to 3 March, a
    weekend in between); a sandbox operator can follow a year whose date differs from the default
    rule. A deadline for a date that is not a count date of that sector would never apply: refused.
    """
    for (sector, count_date), deadline in deadlines.items():
        if not DEFAULT_CALENDAR.is_count_date(Sector(sector), count_date):
            raise ValueError(f"{count_date} is not a count date of {sector} (correction deadline {deadline})")
    return CountDateCalendar(deadlines={(Sector(s), d): last for (s, d), last in deadlines.items()})


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


# The sandbox's own limits for vo, mbo and ho (code SBX-AGE-LIMIT); po follows WPO art. 39 (`po_age_reason`).
AGE_LIMITS: Mapping[Sector, AgeLimit] = {
    # Sandbox choice: vo starts after primary school (about 12); 10 leaves room for early
    # starters. No upper limit is funded away in vo, but 25 keeps test data honest.
    Sector.VO: AgeLimit(10, 25, "the sandbox counts vo pupils aged 10 to 25"),
    # WEB: compulsory education ends at 16 or a starting qualification; mbo funding follows
    # from 16 on. Sandbox choice: students of 30 and over are not funded.
    Sector.MBO: AgeLimit(16, 29, "the sandbox counts mbo students aged 16 to 29"),
    # WHW has no upper age limit for funding; a student starts ho at 16 at the earliest (sandbox choice).
    Sector.HO: AgeLimit(16, None, "the sandbox counts ho students from age 16"),
}

PO_MINIMUM_AGE, PO_LAST_YEAR_AGE = 4, 14


def school_year_start(day: dt.date) -> dt.date:
    """1 August of the school year (1 August to 31 July) a date lies in."""
    return dt.date(day.year if day.month >= 8 else day.year - 1, 8, 1)


def po_age_reason(birth_date: dt.date, count_date: dt.date) -> str | None:
    """Po age rule, after WPO art. 39: from age 4, up to the end of the school year in which the pupil turns 14.

    So a pupil 4 or older on the count date counts, and the age limit is
    checked against the school year, not the count date: a pupil who turns
    14 during the school year (from 1 August on) still counts on its count
    date; one who was 14 already on the last day before the school year
    (31 July) does not.
    """
    if age_on(birth_date, count_date) < PO_MINIMUM_AGE:
        return PO_UNDER_4
    if age_on(birth_date, school_year_start(count_date) - dt.timedelta(days=1)) >= PO_LAST_YEAR_AGE:
        return PO_PAST_14
    return None


def age_reason(sector: Sector, birth_date: dt.date | None, count_date: dt.date) -> str | None:
    """The age reason not to fund, or None (within limits, or birth date unknown: no reason to refuse)."""
    if birth_date is None:
        return None
    if sector is Sector.PO:
        return po_age_reason(birth_date, count_date)
    limit = AGE_LIMITS[sector]
    age = age_on(birth_date, count_date)
    if age < limit.minimum or (limit.maximum is not None and age > limit.maximum):
        return OUTSIDE_SANDBOX_AGE_LIMIT
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
    # Which RIO record ended it: "offering", "location", "school" or "location_use" (the board's use of the
    # location, onderwijslocatiegebruik); vendors see it in the signal.
    ended_record: str = "offering"
    # The course (CREBO, ISAT, ILT or po code) followed in the period: ho's JK rule compares programmes.
    course_code: str = ""

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
    # Ho: the school's "eerste inschrijving" flag (the enrolment it claims funding for).
    first_enrolment: bool = False

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
    # Earlier stays abroad (departure, last day abroad), kept after the pupil returned: history is never erased.
    # BRP is their source (Person.residence_abroad, after the Haal Centraal BRP APIs' verblijfplaatsBuitenland
    # and verblijfplaatshistorie with datumVan / datumTot).
    abroad_before: tuple[tuple[dt.date, dt.date], ...] = ()

    def abroad_on(self, day: dt.date) -> bool:
        """Where the pupil lived on a day, by BRP's history: abroad since a departure not yet followed by a
        return, or within an earlier stay abroad (the day back counts as a day in the Netherlands)."""
        if self.emigration_date is not None and self.emigration_date <= day:
            return True
        return any(left <= day <= back for left, back in self.abroad_before)


@dataclass(frozen=True)
class Decision:
    """Funded or not for one count date, and why (codes plus a text)."""

    count_date: dt.date
    funded: bool
    final: bool
    reason_codes: tuple[str, ...]
    reason: str

    @property
    def status_code(self) -> str:
        """DUO's funding status: JK while a double first enrolment is unresolved, else D when final, else V."""
        if HO_FIRST_ENROLMENT_TWICE in self.reason_codes and not self.final:
            return STATUS_JK
        return STATUS_FINAL if self.final else STATUS_PROVISIONAL


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
    PO_UNDER_4: "the pupil is not yet 4 on {d}",
    PO_PAST_14: "the pupil turned 14 before the school year of {d} began",
    OUTSIDE_SANDBOX_AGE_LIMIT: "the pupil is outside the sandbox's {sector} age limits ({limits}) on {d}",
    SECOND_ENROLMENT: "the pupil's enrolment at {other} counts on {d}; a second enrolment is not funded",
    HO_FIRST_ENROLMENT_TWICE: "first ho enrolment also elsewhere ({other}) on {d}: none is funded until resolved (JK)",
    DECEASED: "the pupil died on or before {d}",
    EMIGRATED: "the pupil emigrated on or before {d}",
    OFFERING_ENDED: "the course offering ended before {d}",
    ENROLMENT_DELETED: "the enrolment was deleted",
}


_ENDED_RECORD_TEXTS = {
    "offering": "RIO ended the course offering",
    "location": "RIO ended the location where the course is offered",
    "school": "RIO ended the school (onderwijsaanbieder)",
    "location_use": "the school board's use of the location (onderwijslocatiegebruik) ended in RIO",
}


def _text(code: str, count_date: dt.date, sector: Sector, other: str = "") -> str:
    limit = AGE_LIMITS.get(sector)
    limits = "" if limit is None else f"{limit.minimum} to {limit.maximum}" if limit.maximum else f"{limit.minimum}+"
    return _TEXTS[code].format(d=count_date.isoformat(), sector=sector.value.lower(), limits=limits, other=other)


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
    first = max(enrolment.first_begin, today - LONGEST_WINDOW)
    in_span = calendar.count_dates_between(enrolment.sector, first, last) if first <= last else []
    open_now = [d for d in in_span if not calendar.is_final(enrolment.sector, d, today)]
    return sorted(set(open_now) | set(previous))


def ineligibility_reasons(enrolment: EnrolmentFacts, person: PersonFacts, count_date: dt.date) -> tuple[str, ...]:
    """Reasons this enrolment cannot be funded on a count date, whatever other enrolments exist.

    In order: deleted (counts for nothing), not enrolled on the date (end date
    inclusive: an enrolment ending on the count date counts), death on or
    before the date, living abroad on the date (BRP; a pupil who returned
    later stays unfunded on a count date spent abroad: the stay abroad is kept
    as history, not erased by the return), the RIO
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
    if person.abroad_on(count_date):
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


def ho_double_first_enrolments(eligible: Sequence[EnrolmentFacts], count_date: dt.date) -> list[str]:
    """Ho's double first enrolment (status JK), after DUO: the ids of the enrolments that get status JK.

    Source: DUO, "Dubbele inschrijving kan bekostiging in gevaar brengen": no
    funding when a student is enrolled at several institutions with "eerste
    inschrijving" Ja at each, or within one institution in different
    programmes with "eerste inschrijving" Ja at each; ROD then answers status
    JK, and it is up to the institutions to decide which one counts. Except:
    the same programme twice within one institution, where DUO decides itself
    which enrolment is funded (here: the earliest, by `_priority`; the other
    is a second enrolment). Only enrolments flagged as first enrolment and
    otherwise eligible on the count date take part.
    """
    firsts = sorted((e for e in eligible if e.sector is Sector.HO and e.first_enrolment), key=_priority)
    # Same institution and same programme: DUO keeps the earliest, the rest are plain second enrolments.
    distinct: dict[tuple[str, str], EnrolmentFacts] = {}
    for enrolment in firsts:
        period = enrolment.period_on(count_date)
        key = (enrolment.institution_code, period.course_code if period else "")
        distinct.setdefault(key, enrolment)
    if len(distinct) < 2:
        return []
    return sorted(e.enrolment_id for e in distinct.values())


def decide_count_date(
    enrolments: Sequence[EnrolmentFacts], person: PersonFacts, count_date: dt.date, sector: Sector
) -> dict[str, tuple[bool, tuple[str, ...], str]]:
    """Funded or not, with codes and text, for each of the pupil's enrolments in one sector on one count date.

    One funded enrolment per pupil per sector on a count date (DUO: a pupil is
    counted once): of the eligible ones the earliest wins (see `_priority`);
    the others are SECOND_ENROLMENT. In ho, double first enrolments (see
    `ho_double_first_enrolments`) are all unfunded with status JK, and any
    other eligible enrolment may then count.
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
        jk = ho_double_first_enrolments(eligible, count_date)
        by_id = {e.enrolment_id: e for e in eligible}
        for enrolment_id in jk:
            others = ",".join(sorted({by_id[o].institution_code for o in jk if o != enrolment_id}))
            text = _text(HO_FIRST_ENROLMENT_TWICE, count_date, sector, other=others)
            result[enrolment_id] = (False, (HO_FIRST_ENROLMENT_TWICE,), text)
        eligible = [e for e in eligible if e.enrolment_id not in jk]
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
    for left, back in person.abroad_before:
        stay = (("date", left.isoformat()), ("returned", (back + dt.timedelta(days=1)).isoformat()))
        text = f"the pupil lived abroad from {left} and returned on {back + dt.timedelta(days=1)}"
        signals.append(Signal(SIGNAL_EMIGRATED, text, stay))
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
    Other count dates are decided afresh from today's facts, and so is an
    unresolved double first enrolment (JK), which stays provisional past the
    deadline until the institutions resolve it.
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
            closed = calendar.is_final(enrolment.sector, count_date, today)
            # Once final, always final: moving a sandbox clock back does not reopen a count.
            if kept is not None and (kept.final or (closed and kept.status_code != STATUS_JK)):
                decisions.append(Decision(count_date, kept.funded, True, kept.reason_codes, kept.reason))
                continue
            if closed and kept is None:
                continue
            # An unresolved JK stays provisional past the deadline (DUO: until the institutions resolve it).
            funded, codes, text = fresh[(enrolment.enrolment_id, count_date)]
            decisions.append(
                Decision(count_date, funded, closed and HO_FIRST_ENROLMENT_TWICE not in codes, codes, text)
            )
        result[enrolment.enrolment_id] = Evaluation(tuple(decisions), _signals(enrolment, person, decisions, conflicts))
    return result
