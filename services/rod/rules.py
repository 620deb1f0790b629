"""ROD's domain types and pure rules beside the funding rules: pupils, periods, causes, statuses and checks.

The funding rules themselves (count dates, ages, conflicts) are the pure
module `services.rod.funding`; this module holds what the use cases
(`services.rod.service`) decide with besides them. Nothing here touches a
database, the network or protobuf.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from services.common.codes import known
from services.common.errors import FieldViolation, RegistryError, failed_precondition, invalid_argument
from services.rod.funding import Decision, Sector, Signal

# ROD's subscriber name for BRP follow indications (volgindicaties): it follows every pupil it enrols.
FOLLOWER = "rod"

# Largest value of a 32-bit integer column or identity sequence (PostgreSQL INTEGER / SERIAL).
MAX_INT32 = 2**31 - 1

# Kinds of RIO record whose end ROD keeps: a location (by location code), a provider (by institution code),
# a board's use of a location (onderwijslocatiegebruik), kept per school of the board (see use_key).
LOCATION, PROVIDER, LOCATION_USE = "location", "provider", "use"


def use_key(location_code: str, institution_code: str) -> str:
    """The code under which ROD keeps the end of a board's use of a location, for one school of that board.

    RIO's use names the board; ROD's enrolments name the school (institution
    code), so the end is kept per school, and the next board's schools at the
    same location are never matched.
    """
    return f"{location_code}@{institution_code}"


# --- codes of ROD's refusals and schema errors (services/common/codes.toml) ---
REQUIRED = known("SBX-REQUIRED")
INVALID = known("SBX-MALFORMED")
TOO_LONG = known("SBX-TOO-LONG")
INVALID_DATE = known("SBX-INVALID-DATE")
INVALID_ENUM = known("SBX-INVALID-ENUM")
INVALID_BSN = known("SBX-INVALID-BSN")
INVALID_ONDERWIJSNUMMER = known("SBX-INVALID-ONDERWIJSNUMMER")
END_BEFORE_BEGIN = known("SBX-END-BEFORE-BEGIN")
PERIODS_OVERLAP = known("SBX-PERIODS-OVERLAP")
NOT_A_UUID = known("SBX-NOT-A-UUID")
OUT_OF_RANGE = known("SBX-OUT-OF-RANGE")
SECTOR_FIELD = known("SBX-SECTOR-FIELD")
PERSON_UNKNOWN = known("SBX-PERSON-UNKNOWN")
PERSON_DECEASED = known("SBX-PERSON-DECEASED")
PERSON_ABROAD = known("SBX-PERSON-ABROAD")
PUPIL_DETAILS_CHANGED = known("SBX-PUPIL-DETAILS-CHANGED")
SEQUENCE_NOT_HIGHER = known("SBX-SEQUENCE-NOT-HIGHER")
ENROLMENT_IS_DELETED = known("SBX-ENROLMENT-IS-DELETED")
END_BEFORE_LAST_BEGIN = known("SBX-END-BEFORE-LAST-BEGIN")
NO_SECTOR = known("SBX-NO-SECTOR")
NOT_OFFERED = known("SBX-NOT-OFFERED")
ONDERWIJSNUMMER_UNKNOWN = known("SBX-ONDERWIJSNUMMER-UNKNOWN")
BIRTH_DATE_MISMATCH = known("SBX-BIRTH-DATE-MISMATCH")
CURSOR_BEYOND_NEWEST = known("SBX-CURSOR-BEYOND-NEWEST")
NOT_A_COUNT_DATE = known("SBX-NOT-A-COUNT-DATE")
INSTITUTION_UNKNOWN = known("SBX-INSTITUTION-UNKNOWN")
BEGIN_BEFORE_BIRTH = known("SBX-BEGIN-BEFORE-BIRTH")
YEAR_OUT_OF_RANGE = known("SBX-YEAR-OUT-OF-RANGE")
BEGIN_TOO_FAR_AHEAD = known("SBX-BEGIN-TOO-FAR-AHEAD")
DUPLICATE_DOCUMENT = known("SBX-DUPLICATE-DOCUMENT")
BATCH_TOO_LARGE = known("SBX-BATCH-TOO-LARGE")
ENROLMENT_NOT_FOUND = known("SBX-ENROLMENT-NOT-FOUND")
# RIO's codes for a refused offering check, relayed as they come.
RIO_LOCATION_UNKNOWN, RIO_COURSE_UNKNOWN, RIO_RECOGNITION_NOT_OWNED = known("A01060"), known("A01070"), known("A01080")
RIO_LOCATION_NOT_IN_USE = known("SBX-LOCATION-NOT-IN-USE")
VESTIGING_REQUIRED = known("SBX-VESTIGING-REQUIRED")


class Violations(list[FieldViolation]):
    """The violations found so far in one request or check, in the order found."""

    def add(self, field: str, description: str, code: str = INVALID, keys: tuple[tuple[str, str], ...] = ()) -> None:
        self.append(FieldViolation(field, description, code, keys))


class EnrolmentStatus(enum.StrEnum):
    """Status of an enrolment (inschrijving), as stored."""

    ACTIVE = "ACTIVE"
    ENDED = "ENDED"
    DELETED = "DELETED"


class Trigger(enum.IntEnum):
    """What caused a feedback; the numbers are the contract's FeedbackTrigger (a unit test keeps them equal)."""

    SCHOOL_MESSAGE = 1
    BRP_CHANGE = 2
    RIO_CHANGE = 3
    OTHER_ENROLMENT = 4
    COUNT_DATE = 5


class Outcome(enum.IntEnum):
    """Outcome of one processed message (verwerkingsresultaat); the numbers are the contract's FeedbackOutcome."""

    APPROVED = 1
    APPROVED_WITH_SIGNAL = 2
    REJECTED = 3


def outcome_of(signals: Sequence[Signal]) -> Outcome:
    return Outcome.APPROVED_WITH_SIGNAL if signals else Outcome.APPROVED


# --- pupils ---


@dataclass(frozen=True)
class PupilDetails:
    """A pupil as a school describes them (for identification without a BSN)."""

    given_names: str
    surname_prefix: str
    surname: str
    birth_date: dt.date
    sex: int
    postcode: str
    house_number: int
    house_number_addition: str


def normal_postcode(postcode: str) -> str:
    """A Dutch postcode without spaces, upper case: "1012 ab" -> "1012AB"."""
    return postcode.replace(" ", "").upper()


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def same_pupil(known: PupilDetails, details: PupilDetails) -> bool:
    """Same names, birth date and address (postcode + house number), ignoring case and spacing."""
    return (
        known.birth_date == details.birth_date
        and _norm(known.surname) == _norm(details.surname)
        and _norm(known.surname_prefix) == _norm(details.surname_prefix)
        and _norm(known.given_names) == _norm(details.given_names)
        and normal_postcode(known.postcode) == normal_postcode(details.postcode)
        and known.house_number == details.house_number
        and _norm(known.house_number_addition) == _norm(details.house_number_addition)
    )


def bsn_from_brp(details: PupilDetails, candidates: Sequence[BrpFacts]) -> str | None:
    """The BSN of the one BRP person the school's details describe, or None when none or several match.

    DUO first tries to find the BSN with the personal details (name, birth date, sex, address) and issues an
    onderwijsnummer only when no BSN is known: "DUO controleert deze gegevens en u ontvangt in de
    terugkoppeling een burgerservicenummer of onderwijsnummer van de leerling"
    (https://duo.nl/zakelijk/primair-onderwijs/leerlingenadministratie/inschrijven-leerling/leerling-identificeren.jsp);
    a pupil gets an onderwijsnummer when "de school een leerling aanlevert met afwijkende gegevens, waardoor
    de juiste persoonsgegevens (incl. burgerservicenummer) niet gevonden worden"
    (http://www.duo.nl/zakelijk/VO/Inschrijvingsgegevens/Vraag_en_antwoord.asp).
    The candidates are the persons BRP lives at the details' postcode and house number with their birth
    date; a match also has the same names (ignoring case and spacing) and the same sex (an unspecified sex
    on either side matches any). Two matches are ambiguous: the sandbox then issues an onderwijsnummer
    rather than guess.
    """
    matches = {
        c.bsn
        for c in candidates
        if c.birth_date == details.birth_date
        and _norm(c.surname) == _norm(details.surname)
        and _norm(c.surname_prefix) == _norm(details.surname_prefix)
        and _norm(c.given_names) == _norm(details.given_names)
        and (not c.sex or not details.sex or c.sex == details.sex)
    }
    return next(iter(matches)) if len(matches) == 1 else None


@dataclass(frozen=True)
class BrpFacts:
    """What ROD keeps of a BRP person."""

    bsn: str
    birth_date: dt.date | None
    death_date: dt.date | None
    emigration_date: dt.date | None
    sequence: int
    given_names: str = ""
    surname_prefix: str = ""
    surname: str = ""
    sex: int = 0
    # The date the BRP change behind these facts took effect (datum ingang), when they come from one.
    effective_date: dt.date | None = None
    # Every stay abroad BRP keeps for the person (Person.residence_abroad), oldest first: (first day abroad,
    # day back in the Netherlands or None while abroad). BRP is the source of these periods.
    abroad: tuple[tuple[dt.date, dt.date | None], ...] = ()

    def ended_stays_abroad(self) -> tuple[tuple[dt.date, dt.date], ...]:
        """The stays that ended with a return, as (first day, last day abroad): the day back is spent here."""
        if not self.abroad:
            return ()  # most pupils: no generator (a bulk batch asks 2,000 times)
        return tuple((begin, max(begin, end - dt.timedelta(days=1))) for begin, end in self.abroad if end is not None)


def person_violations(facts: BrpFacts, start: dt.date, field: str = "pupil.bsn") -> Violations:
    """A person who died or emigrated on or before the start date cannot be enrolled."""
    violations = Violations()
    keys = (("bsn", facts.bsn),)
    if facts.death_date is not None and facts.death_date <= start:
        violations.add(field, f"the person died on {facts.death_date}", PERSON_DECEASED, keys)
    if facts.emigration_date is not None and facts.emigration_date <= start:
        violations.add(field, f"the person emigrated on {facts.emigration_date}", PERSON_ABROAD, keys)
    return violations


def follow_end(enrolments: Sequence[tuple[bool, dt.date | None]], today: dt.date) -> dt.date | None:
    """The end (einddatum) of ROD's follow indication on a pupil, from the pupil's enrolments (deleted, last end).

    ROD follows every person it holds an enrolment for (DESIGN.md "BRP": volgindicatie) and no longer than
    that, as the Haal Centraal BRP update API lets a subscriber end an indication with an einddatum
    (BRP-API/Haal-Centraal-BRP-Update-API, VolgindicatiePersoon.einddatum; features/volgindicaties.feature:
    from the einddatum on the person is no longer followed). An enrolment without an end keeps following
    (None); when every enrolment that counts has ended, the indication ends the day after the last end, so
    changes about the last day enrolled still arrive; when every enrolment was deleted (sent by mistake),
    ROD holds none and the indication ends today.
    """
    kept = [end for deleted, end in enrolments if not deleted]
    if not kept:
        return today
    if any(end is None for end in kept):
        return None
    return max(end for end in kept if end is not None) + dt.timedelta(days=1)


# --- enrolments ---


@dataclass(frozen=True)
class PeriodShape:
    """A period as a school sent it (inschrijvingsperiode), before RIO checked it."""

    begin: dt.date
    end: dt.date | None
    location_code: str
    course_code: str
    year: int


@dataclass(frozen=True)
class OfferingCheck:
    """RIO's answer to "did this school offer this course at this location on this date?"."""

    offered: bool
    reason_code: str = ""
    reason: str = ""
    sector: Sector | None = None
    offering_id: str = ""
    offering_end: dt.date | None = None


@dataclass(frozen=True)
class PeriodIn:
    """A period as a school sent it, with the RIO offering it was checked against."""

    begin: dt.date
    end: dt.date | None
    location_code: str
    course_code: str
    year: int
    offering_id: str
    offering_end: dt.date | None


# RIO's error code for a refused offering check, and the field of the period it concerns.
_RIO_FIELDS = {
    RIO_LOCATION_UNKNOWN: "location_code",
    RIO_COURSE_UNKNOWN: "course_code",
    RIO_RECOGNITION_NOT_OWNED: "course_code",
    RIO_LOCATION_NOT_IN_USE: "location_code",
    NOT_OFFERED: "course_code",
}


@dataclass(frozen=True)
class CheckedPeriods:
    periods: list[PeriodIn]
    sector: Sector | None
    violations: Violations


def checked_periods(
    shapes: Sequence[PeriodShape], checks: Sequence[OfferingCheck | None], sector: Sector | None = None
) -> CheckedPeriods:
    """The periods RIO confirmed, the school's sector, and a violation per period RIO refused.

    A check of None is a period RIO was not asked about (it has no location: `located_periods` said why).
    """
    violations = Violations()
    periods: list[PeriodIn] = []
    for index, (shape, check) in enumerate(zip(shapes, checks, strict=True)):
        if check is None:
            continue
        if not check.offered:
            field = _RIO_FIELDS.get(check.reason_code, "")
            violations.add(
                f"periods[{index}].{field}" if field else f"periods[{index}]",
                check.reason or "the course is not offered at this location on the begin date",
                check.reason_code or NOT_OFFERED,
                (
                    ("onderwijslocatiecode", shape.location_code),
                    ("opleidingscode", shape.course_code),
                    ("begindatum", shape.begin.isoformat()),
                ),
            )
            continue
        sector = sector or check.sector
        periods.append(
            PeriodIn(
                shape.begin,
                shape.end,
                shape.location_code,
                shape.course_code,
                shape.year,
                check.offering_id,
                offering_end_for(shape.end, check.offering_end),
            )
        )
    if not violations and sector is None and periods:
        violations.add("institution_code", "RIO knows no sector for this school", NO_SECTOR)
    return CheckedPeriods(periods, sector, violations)


@dataclass(frozen=True)
class SchoolLocations:
    """RIO's answer about a school on a date: its sector and the locations where it teaches then.

    The locations are RIO's onderwijslocatiegebruik of the provider (ListLocations by provider):
    where it has a course offering valid on the date. `sector` is None when RIO knows no such school.
    """

    sector: Sector | None
    location_codes: tuple[str, ...]


@dataclass(frozen=True)
class LocatedPeriods:
    shapes: tuple[PeriodShape, ...]
    sector: Sector | None
    violations: Violations


# Locations listed in a refusal's metadata when a school has several (the rest are left out).
MAX_LISTED_LOCATIONS = 10


def located_periods(shapes: Sequence[PeriodShape], schools: Mapping[int, SchoolLocations]) -> LocatedPeriods:
    """The vestiging (onderwijslocatie) of each period sent without one, from RIO's locations of the school.

    A po or vo school names the vestiging where the pupil is taught; where RIO registers exactly one
    location for the school on the period's begin date there is only one it can be, so ROD takes that
    one, and where it registers several the school must say which (SBX-VESTIGING-REQUIRED, metadata
    the candidates). Mbo always names the location (DUO, "Uitwisselen met ROD": "levert u ook de
    onderwijslocatie aan waar de student het grootste gedeelte van het onderwijs volgt",
    https://www.duo.nl/zakelijk/middelbaar-beroepsonderwijs/studentenadministratie/uitwisselen-met-bron-nw.jsp),
    and so does ho in the sandbox (SBX-SECTOR-FIELD). A period with a location is left as sent: RIO's
    CheckOffering then checks that the school offers the course there.

    `schools` holds RIO's answer for the index of each period sent without a location.
    """
    violations = Violations()
    result: list[PeriodShape] = []
    sector: Sector | None = None
    for index, shape in enumerate(shapes):
        school = schools.get(index)
        if shape.location_code or school is None:
            result.append(shape)
            continue
        sector = sector or school.sector
        field = f"periods[{index}].location_code"
        begin = (("begindatum", shape.begin.isoformat()),)
        found = school.location_codes
        if school.sector is None:
            violations.add("institution_code", "RIO knows no school with this institution code", INSTITUTION_UNKNOWN)
        elif school.sector not in (Sector.PO, Sector.VO):
            violations.add(
                field,
                f"is required for {school.sector.value.lower()} enrolments",
                SECTOR_FIELD,
                (("sector", school.sector.value),),
            )
        elif not found:
            violations.add(
                field, f"RIO registers no location where this school teaches on {shape.begin}", NOT_OFFERED, begin
            )
        elif len(found) > 1:
            listed = ",".join(found[:MAX_LISTED_LOCATIONS])
            violations.add(
                field,
                f"the school teaches at {len(found)} locations on {shape.begin}: name the vestiging ({listed})",
                VESTIGING_REQUIRED,
                (*begin, ("onderwijslocatiecodes", listed)),
            )
        else:
            result.append(dataclasses.replace(shape, location_code=found[0]))
            continue
        result.append(shape)
    return LocatedPeriods(tuple(result), sector, violations)


class Leerweg(enum.StrEnum):
    """Mbo leerweg, DUO's values ("Leerweg", Regeling gegevensverstrekking persoonsgebonden nummer BVE 2009)."""

    BOL = "BOL"
    BBL = "BBL"


class Intensity(enum.StrEnum):
    """Mbo intensiteit, DUO's values: VT voltijd, DT deeltijd (EX examendeelnemer is not modelled)."""

    VOLTIJD = "VT"
    DEELTIJD = "DT"


class StudyMode(enum.StrEnum):
    """Ho opleidingsvorm: WHW art. 7.7, a programme is given "voltijds, deeltijds of duaal"."""

    VOLTIJD = "VOLTIJD"
    DEELTIJD = "DEELTIJD"
    DUAAL = "DUAAL"


@dataclass(frozen=True)
class SectorFields:
    """The enrolment data that belongs to one sector: mbo leerweg and intensity, ho mode of study.

    (Ho's "eerste inschrijving" flag travels beside them as `first_enrolment`: a bool on the wire, so
    false and unset are one value, and it can never be missing.)
    """

    leerweg: Leerweg | None = None
    intensity: Intensity | None = None
    study_mode: StudyMode | None = None


# Which sector each field belongs to, the field's name on the wire, and DUO's name in the metadata.
_SECTOR_FIELDS = (
    ("leerweg", Sector.MBO, "mbo_leerweg", "leerweg"),
    ("intensity", Sector.MBO, "mbo_intensity", "intensiteit"),
    ("study_mode", Sector.HO, "ho_study_mode", "opleidingsvorm"),
)


def sector_field_violations(
    sector: Sector | None, *, first_enrolment: bool, fields: SectorFields = SectorFields()
) -> Violations:
    """Each sector's own enrolment data, checked once RIO told the school's sector (SBX-SECTOR-FIELD).

    - Mbo: leerweg (BOL, BBL) and intensity (VT, DT) are required, after DUO's mbo enrolment data
      ("Leerweg" and "Intensiteit", Regeling gegevensverstrekking persoonsgebonden nummer BVE 2009,
      bijlage C, https://wetten.overheid.nl/BWBR0027035); either intensity goes with either leerweg
      there, so the sandbox accepts every combination.
    - Ho: the mode of study (opleidingsvorm: voltijd, deeltijd, duaal; WHW art. 7.7,
      https://wetten.overheid.nl/BWBR0005682) is required; "eerste inschrijving" is ho's alone
      (DUO, "Dubbele inschrijving kan bekostiging in gevaar brengen").
    - A field of another sector is refused, so po and vo send none of them.

    Unknown sector (RIO refused every period): nothing to check yet.
    """
    violations = Violations()
    if sector is None:
        return violations
    sector_keys = (("sector", sector.value),)
    if first_enrolment and sector is not Sector.HO:
        violations.add(
            "ho_first_enrolment",
            f"is for ho enrolments only; this school is {sector.value.lower()}",
            SECTOR_FIELD,
            sector_keys,
        )
    for attribute, owner, field, duo_name in _SECTOR_FIELDS:
        value = getattr(fields, attribute)
        if value is not None and sector is not owner:
            violations.add(
                field,
                f"is for {owner.value.lower()} enrolments only; this school is {sector.value.lower()}",
                SECTOR_FIELD,
                (*sector_keys, (duo_name, value.value)),
            )
        elif value is None and sector is owner:
            violations.add(field, f"is required for {owner.value.lower()} enrolments", SECTOR_FIELD, sector_keys)
    return violations


# Reasons an enrolment ended (reden uitschrijving), per sector. Mbo: DUO's "reden uitstroom" codes
# (Regeling gegevensverstrekking persoonsgebonden nummer BVE 2009, bijlage C). Po, vo and ho: DUO
# publishes no list, so the sandbox has its own SBX-UIT- codes. All are in services/common/codes.toml.
MBO_END_REASONS = tuple(known(f"0{n}") for n in range(1, 9))
OTHER_END_REASONS = tuple(
    known(code)
    for code in (
        "SBX-UIT-OVERSTAP",
        "SBX-UIT-DIPLOMA",
        "SBX-UIT-BUITENLAND",
        "SBX-UIT-VOORTIJDIG",
        "SBX-UIT-OVERLEDEN",
        "SBX-UIT-OVERIG",
    )
)
END_REASON = known("SBX-END-REASON")


def end_reason_violations(sector: Sector, code: str) -> Violations:
    """The reason an enrolment ends (EndEnrolment's end_reason_code), per sector (SBX-END-REASON).

    Mbo: required, one of DUO's "reden uitstroom" codes 01 to 08 (Regeling gegevensverstrekking
    persoonsgebonden nummer BVE 2009, bijlage C, https://wetten.overheid.nl/BWBR0027035). Po, vo
    and ho: optional (DUO asks no reason there in a public source), and when given one of the
    sandbox's own SBX-UIT- codes. A code of the other group, or an unknown one, is refused.
    """
    violations = Violations()
    allowed = MBO_END_REASONS if sector is Sector.MBO else OTHER_END_REASONS
    if code in allowed or (not code and sector is not Sector.MBO):
        return violations
    keys = (("reden_uitschrijving", code), ("sector", sector.value))
    if not code:
        description = "is required for mbo enrolments: one of DUO's reden uitstroom codes 01 to 08"
    else:
        description = f"is not a reason for leaving of {sector.value.lower()}: use one of {', '.join(allowed)}"
    violations.add("end_reason_code", description, END_REASON, keys)
    return violations


# Year or group (leerjaar / groep) per sector; 0 means "not applicable" and is always accepted.
# po: groep 1 to 8 (a basisschool's eight groups); vo: leerjaar 1 to 6 (vwo, the longest vo programme,
# takes six years); mbo 1 to 4 (a level-4 programme takes up to four years); ho 1 to 8 (a bachelor and a
# master, with delay). The sandbox's own ranges (no public DUO code): SBX-YEAR-OUT-OF-RANGE.
YEAR_RANGES = {Sector.PO: (1, 8), Sector.VO: (1, 6), Sector.MBO: (1, 4), Sector.HO: (1, 8)}
# How far after the sandbox's today a period may begin: DUO asks schools to register a pupil who comes
# "binnen een jaar" (within a year); a later start is almost always a typing error in the year.
MAX_YEARS_AHEAD = 1


def _years_after(day: dt.date, years: int) -> dt.date:
    """The same calendar day `years` later; 29 February becomes 28 February in a common year."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def period_violations(
    periods: Sequence[PeriodShape], *, sector: Sector | None, birth_date: dt.date | None, today: dt.date
) -> Violations:
    """The checks of each period that need the pupil, the school's sector and the sandbox's today.

    - A period cannot begin before the pupil's birth date (SBX-BEGIN-BEFORE-BIRTH); beginning on it is
      accepted (the age rules decide funding).
    - The year or group must lie in the sector's range (YEAR_RANGES, SBX-YEAR-OUT-OF-RANGE); 0 is "not
      applicable".
    - A period may begin at most MAX_YEARS_AHEAD year after the sandbox's today, the day itself included
      (SBX-BEGIN-TOO-FAR-AHEAD; DUO: register a pupil who comes within a year,
      https://www.duo.nl/zakelijk/voortgezet-onderwijs/leerlingenadministratie/inschrijven-leerling.jsp).

    Only the first period is checked against the birth date: later ones begin later still.
    """
    violations = Violations()
    latest_begin = _years_after(today, MAX_YEARS_AHEAD)
    for index, period in enumerate(periods):
        field = f"periods[{index}]"
        begin_keys = (("begindatum", period.begin.isoformat()),)
        if index == 0 and birth_date is not None and period.begin < birth_date:
            violations.add(
                f"{field}.begin_date",
                f"begins before the pupil's birth date {birth_date}",
                BEGIN_BEFORE_BIRTH,
                (*begin_keys, ("geboortedatum", birth_date.isoformat())),
            )
        if sector is not None and period.year != 0:
            low, high = YEAR_RANGES[sector]
            if not low <= period.year <= high:
                violations.add(
                    f"{field}.year",
                    f"{sector.value.lower()} years run from {low} to {high} (0 when not applicable)",
                    YEAR_OUT_OF_RANGE,
                    (("leerjaar", str(period.year)), ("sector", sector.value)),
                )
        if period.begin > latest_begin:
            violations.add(
                f"{field}.begin_date",
                f"begins more than a year after the sandbox's today ({today}); register it at most a year ahead",
                BEGIN_TOO_FAR_AHEAD,
                begin_keys,
            )
    return violations


def require_count_date(sector: Sector, day: dt.date, is_count_date: bool) -> None:
    """GetFundingCount answers only for a count date of the school's sector (see funding.CountDateCalendar)."""
    if not is_count_date:
        raise failed_precondition(
            [
                FieldViolation(
                    "count_date",
                    f"{day} is not a count date of {sector.value.lower()} (po 1 February, vo/mbo/ho 1 October)",
                    NOT_A_COUNT_DATE,
                    (("teldatum", day.isoformat()), ("sector", sector.value)),
                )
            ]
        )


def unknown_institution(institution_code: str, field: str) -> RegistryError:
    """A well-formed institution code RIO has no school for: refused, or its stream would stay silent for ever."""
    return RegistryError(
        grpc.StatusCode.NOT_FOUND,
        f"RIO knows no school with institution code {institution_code} in this sandbox",
        INSTITUTION_UNKNOWN,
        (FieldViolation(field, "RIO knows no school with this institution code", INSTITUTION_UNKNOWN),),
        {"instellingscode": institution_code},
    )


def offering_end_for(period_end: dt.date | None, offering_end: dt.date | None) -> dt.date | None:
    """The offering end that matters for a period: only one before the period's own end."""
    if offering_end is None or (period_end is not None and offering_end >= period_end):
        return None
    return offering_end


def status_after(last_end: dt.date | None) -> EnrolmentStatus:
    """An enrolment whose last period has an end date is ended (uitgeschreven)."""
    return EnrolmentStatus.ENDED if last_end is not None else EnrolmentStatus.ACTIVE


def require_higher_sequence(current: int, sequence: int) -> None:
    """A new state (stand) of an enrolment must carry a higher sequence number than the last accepted one."""
    if sequence <= current:
        raise failed_precondition(
            [
                FieldViolation(
                    "sequence",
                    f"must be higher than the enrolment's current sequence {current}",
                    SEQUENCE_NOT_HIGHER,
                    (("volgnummer", str(sequence)), ("huidig_volgnummer", str(current))),
                )
            ]
        )


def require_not_deleted(status: EnrolmentStatus) -> None:
    if status is EnrolmentStatus.DELETED:
        raise failed_precondition([FieldViolation("enrolment_id", "the enrolment was deleted", ENROLMENT_IS_DELETED)])


def require_end_after_begin(end: dt.date, last_begin: dt.date) -> None:
    if end < last_begin:
        raise failed_precondition(
            [
                FieldViolation(
                    "end_date",
                    f"is before the last period's begin {last_begin}",
                    END_BEFORE_LAST_BEGIN,
                    (("einddatum", end.isoformat()), ("begindatum", last_begin.isoformat())),
                )
            ]
        )


def duplicate_document(document_id: str) -> RegistryError:
    """A document id already received and processed: DUO refuses a repeated message."""
    return RegistryError(
        grpc.StatusCode.ALREADY_EXISTS,
        f"document {document_id} was already received",
        DUPLICATE_DOCUMENT,
        (FieldViolation("document_id", "already received: a repeated document is refused", DUPLICATE_DOCUMENT),),
        {"document_id": document_id},
    )


def earliest_end(**ends: dt.date | None) -> tuple[dt.date | None, str]:
    """The earliest of the named RIO ends and the record it belongs to (the offering's on a tie)."""
    known = [(day, record) for record, day in ends.items() if day is not None]
    if not known:
        return None, "offering"
    return min(known, key=lambda end: end[0])


# --- what ROD states about an enrolment ---


@dataclass(frozen=True)
class PeriodState:
    begin: dt.date
    end: dt.date | None
    location_code: str
    course_code: str
    year: int


@dataclass(frozen=True)
class EnrolmentState:
    """An enrolment as ROD states it to a school: its current state, periods and funding decisions."""

    enrolment_id: str
    pupil_number: str
    institution_code: str
    periods: tuple[PeriodState, ...]
    sequence: int
    status: EnrolmentStatus
    decisions: tuple[Decision, ...]
    updated_at: dt.datetime
    first_enrolment: bool = False
    fields: SectorFields = SectorFields()
    end_reason: str = ""


@dataclass(frozen=True)
class EnrolmentOutcome:
    """ROD's answer to a school's message: the enrolment, its signals and the cursor of the feedback written."""

    enrolment: EnrolmentState
    signals: tuple[Signal, ...]
    feedback_cursor: int
    assigned_onderwijsnummer: str = ""

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.signals)


# --- the bulk path (RegisterEnrolments) ---

# Items one RegisterEnrolments call may hold: its answer (about 1 kB an item) stays far below gRPC's 16 MB.
MAX_BULK_ENROLMENTS = 1_000


def require_batch_size(count: int) -> None:
    """A batch holds 1 to MAX_BULK_ENROLMENTS items; otherwise the whole call is refused before any item is read."""
    if count == 0:
        raise invalid_argument([FieldViolation("enrolments", "at least one enrolment", REQUIRED)], reason=REQUIRED)
    if count > MAX_BULK_ENROLMENTS:
        raise invalid_argument(
            [
                FieldViolation(
                    "enrolments", f"{count} enrolments; at most {MAX_BULK_ENROLMENTS} a call", BATCH_TOO_LARGE
                )
            ],
            reason=BATCH_TOO_LARGE,
        )


@dataclass(frozen=True)
class BulkItem:
    """One item of a bulk registration: what registering it did, or the error that refused it (never both)."""

    index: int
    document_id: str
    outcome: EnrolmentOutcome | None = None
    refusal: RegistryError | None = None


# --- feedback ---


@dataclass(frozen=True)
class Cause:
    """What made ROD re-evaluate: the trigger for the enrolment the cause concerns, and for the others."""

    trigger: Trigger
    # FeedbackCause.id: the school's document, the BRP message, "rio:<cursor>" or "teldatum:<date>".
    cause_id: str = ""
    enrolment_id: str = ""
    document_id: str = ""
    # Told once with this cause to every school holding an enrolment of the pupil, even when no decision
    # changed (BRP's new personal details); not kept with the enrolment's own signals.
    notices: tuple[Signal, ...] = ()

    def trigger_for(self, enrolment_id: str) -> Trigger:
        """A school's message is the trigger of its own enrolment; the pupil's other enrolments see OTHER_ENROLMENT."""
        if enrolment_id != self.enrolment_id and self.trigger is Trigger.SCHOOL_MESSAGE:
            return Trigger.OTHER_ENROLMENT
        return self.trigger


# The personal details BRP passes on that a school keeps in its administration, as BRP's person fields.
_PERSONAL_DETAILS = ("given_names", "surname_prefix", "surname", "birth_date")


def details_changed_notice(before: dict[str, object], after: BrpFacts) -> Signal | None:
    """The notice telling a school that BRP changed a pupil's name or corrected the birth date, or None.

    DUO passes changed BRP personal details of a pupil on to the school, so its
    administration can follow ("Mutaties persoonsgegevens",
    https://www.duo.nl/zakelijk/voortgezet-onderwijs/leerlingenadministratie/inschrijven-leerling.jsp);
    DUO publishes no code for it, hence SBX-PUPIL-DETAILS-CHANGED. Its parameters
    are the changed fields with their new values (a birth date as yyyy-mm-dd).
    Informational: it changes no funding (a birth date does through the decisions).
    """
    changed = []
    # A pupil stored without any name (no BRP read yet) has nothing to compare a name with.
    names_known = any(before.get(name) for name in _PERSONAL_DETAILS[:3])
    for name in _PERSONAL_DETAILS if names_known else _PERSONAL_DETAILS[3:]:
        new = getattr(after, name)
        if before.get(name) != new:
            changed.append((name, new.isoformat() if isinstance(new, dt.date) else str(new or "")))
    if not changed:
        return None
    text = "BRP changed the pupil's " + ", ".join(f"{name} to {value!r}" for name, value in changed)
    return Signal(PUPIL_DETAILS_CHANGED, text, tuple(changed))


def rio_cause(cursor: int) -> Cause:
    return Cause(Trigger.RIO_CHANGE, cause_id=f"rio:{cursor}")


def count_date_cause(today: dt.date) -> Cause:
    return Cause(Trigger.COUNT_DATE, cause_id=f"teldatum:{today.isoformat()}")


@dataclass(frozen=True)
class FeedbackEntry:
    """One feedback (terugkoppeling) for the outbox: what a school is told about one enrolment."""

    sandbox_id: str
    institution_code: str
    enrolment_id: str
    pupil_number: str
    outcome: Outcome
    trigger: Trigger
    cause_id: str
    document_id: str = ""
    decisions: tuple[Decision, ...] = ()
    signals: tuple[Signal, ...] = ()


def rejection_signals(violations: Sequence[FieldViolation]) -> tuple[Signal, ...]:
    """A refused message's violations as the signals of its REJECTED feedback."""
    return tuple(Signal(v.code, v.description, (("field", v.field),)) for v in violations)


@dataclass(frozen=True)
class OutboxEntry:
    """A feedback as stored in the outbox: its cursor, commit time and the wire message ROD wrote."""

    cursor: int
    committed_at: dt.datetime
    payload: bytes


def subscriber_key(institution_code: str | None, subscriber: str) -> str:
    """A school's subscriber names live in that school's own namespace; the sandbox admin's in "*"."""
    return f"{institution_code or '*'}/{subscriber}"


def require_acknowledgeable(cursor: int, newest: int) -> None:
    """A subscriber may acknowledge only feedback that exists: a cursor beyond the newest would skip what follows."""
    if cursor > newest:
        raise failed_precondition(
            [
                FieldViolation(
                    "cursor",
                    f"is beyond the newest feedback cursor {newest}: acknowledge only feedback received",
                    CURSOR_BEYOND_NEWEST,
                    (("cursor", str(cursor)), ("nieuwste_cursor", str(newest))),
                )
            ]
        )


# --- commands: what a school (or the sandbox admin) asks of ROD, decoded and shape-checked ---


@dataclass(frozen=True)
class IdentifyPupil:
    """By BSN (with the birth date the school states, if any) or, without BSN, by the pupil's details."""

    bsn: str = ""
    stated_birth_date: dt.date | None = None
    details: PupilDetails | None = None


@dataclass(frozen=True)
class IdentifiedPupil:
    pupil_number: str
    newly_assigned: bool = False


@dataclass(frozen=True)
class RegisterEnrolment:
    document_id: str
    institution_code: str
    # The BSN or onderwijsnummer the school sent; "" when it sent the pupil's details instead.
    pupil_number: str
    pupil_has_bsn: bool
    details: PupilDetails | None
    periods: tuple[PeriodShape, ...]
    sequence: int
    first_enrolment: bool = False
    fields: SectorFields = SectorFields()


@dataclass(frozen=True)
class EnrolmentMessage:
    """A school's message about one of its enrolments: the message's document id (UUID) and the enrolment."""

    document_id: str
    enrolment_id: str


@dataclass(frozen=True)
class ChangeEnrolment(EnrolmentMessage):
    periods: tuple[PeriodShape, ...]
    sequence: int
    first_enrolment: bool = False
    fields: SectorFields = SectorFields()


@dataclass(frozen=True)
class EndEnrolment(EnrolmentMessage):
    end: dt.date
    sequence: int
    # Reden uitschrijving (see end_reason_violations); "" when the school gave none.
    end_reason: str = ""


@dataclass(frozen=True)
class DeleteEnrolment(EnrolmentMessage):
    """Deletes an enrolment sent by mistake: it no longer counts for anything."""


@dataclass(frozen=True)
class ListEnrolments:
    institution_code: str
    pupil_number: str
    active_on: dt.date | None
    page_size: int
    after_id: str


@dataclass(frozen=True)
class FollowFeedback:
    """StreamFeedback: which schools, and from which cursor (or the subscriber's acknowledged one)."""

    institution_codes: tuple[str, ...]
    after_cursor: int
    subscriber: str
    resume_from_acknowledged: bool


@dataclass(frozen=True)
class AcknowledgeFeedback:
    subscriber: str
    cursor: int


@dataclass(frozen=True)
class ListFeedback:
    cause_id: str
    trigger: int
    institution_code: str
    enrolment_id: str
    page_size: int
    after_cursor: int


@dataclass(frozen=True)
class FundingCount:
    """A school's count of funded pupils on a count date (teldatum), final or provisional."""

    institution_code: str
    count_date: dt.date
    final: bool
    funded_enrolment_ids: tuple[str, ...]


# --- changes ROD follows in its peers' streams ---


@dataclass(frozen=True)
class OfferingChanged:
    """RIO changed or ended a course offering (aangeboden opleiding)."""

    sandbox_id: str
    cursor: int
    offering_id: str
    end: dt.date | None


@dataclass(frozen=True)
class RioEndChanged:
    """RIO set (or lifted) the end of a location (by location code) or a provider (by institution code)."""

    sandbox_id: str
    cursor: int
    kind: str
    code: str
    end: dt.date | None


@dataclass(frozen=True)
class LocationUseChanged:
    """RIO created, ended or re-ended a board's use of a location (onderwijslocatiegebruik); end None: open."""

    sandbox_id: str
    cursor: int
    location_code: str
    board_code: str
    end: dt.date | None


# A RIO change that can alter a decision.
RioChanged = OfferingChanged | RioEndChanged | LocationUseChanged


@dataclass(frozen=True)
class PersonChanged:
    """BRP applied a change to a person (by its message id); `facts` is the person after it."""

    sandbox_id: str
    cursor: int
    message_id: str
    facts: BrpFacts
