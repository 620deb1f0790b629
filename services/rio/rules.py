"""RIO's register rules and domain types as pure functions: validity periods, versions, ownership, courses, codes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol, TypeVar

import grpc

from services.common.codes import known
from services.common.errors import FieldViolation, RegistryError, failed_precondition, invalid_argument

# Every code RIO emits, from services/common/codes.toml: DUO's own where DUO publishes one, SBX- otherwise.
LOCATION_UNKNOWN = known("A01060")  # onderwijslocatie bestaat niet (op de peildatum)
COURSE_UNKNOWN = known("A01070")  # opleidingseenheid bestaat niet (op de peildatum)
# A01080 (opleidingserkenning niet van dit bestuur) is DUO's for recognitions; the sandbox keeps none per board.
NOT_AUTHORISED = known("AUT401")
INSTITUTION_UNKNOWN = known("SBX-INSTITUTION-UNKNOWN")  # no provider with this institution code on the day
NOT_OFFERED = known("SBX-NOT-OFFERED")  # everything exists, but no aangeboden opleiding on the day
LOCATION_NOT_IN_USE = known("SBX-LOCATION-NOT-IN-USE")  # the provider's board does not use the location that day
LOCATION_IN_USE = known("SBX-LOCATION-IN-USE")  # another board uses the location in an overlapping period
RECORD_NOT_FOUND = known("SBX-NOT-FOUND")  # shared by every register
RECORD_EXISTS = known("SBX-RECORD-EXISTS")
RECORD_ENDED = known("SBX-RECORD-ENDED")
INCONSISTENT = known("SBX-INCONSISTENT")
END_BEFORE_BEGIN = known("SBX-END-BEFORE-BEGIN")
PERIOD_OVERLAP = known("SBX-VALIDITY-OVERLAP")
INVALID_CODE = known("SBX-MALFORMED")
INVALID_DATE = known("SBX-INVALID-DATE")
INVALID_POSTCODE = known("SBX-INVALID-POSTCODE")
TOO_LONG = known("SBX-TOO-LONG")
REQUIRED = known("SBX-REQUIRED")
INVALID_ENUM = known("SBX-INVALID-ENUM")
INVALID_LEVEL = known("SBX-INVALID-LEVEL")


# The numbers are the contract's enum values, and what the tables store.
class Sector(IntEnum):
    """Onderwijssector: po, vo, mbo, ho."""

    PO = 1
    VO = 2
    MBO = 3
    HO = 4


class CodeSystem(IntEnum):
    """Opleidingsstelsel: which national code list a course code comes from."""

    CREBO = 1
    ISAT = 2
    ILT = 3
    PO = 4


class RecordKind(IntEnum):
    BOARD = 1
    PROVIDER = 2
    LOCATION = 3
    COURSE = 4
    COURSE_OFFERING = 5
    LOCATION_USE = 6


class ChangeKind(IntEnum):
    CREATED = 1
    UPDATED = 2  # a new version was recorded
    ENDED = 3  # an einddatum was set


# Which sector a course code system belongs to, and the levels (niveaus) of each sector.
SYSTEM_SECTOR = {
    CodeSystem.CREBO: Sector.MBO,
    CodeSystem.ISAT: Sector.HO,
    CodeSystem.ILT: Sector.VO,
    CodeSystem.PO: Sector.PO,
}
LEVELS = {
    Sector.PO: ("PO-BAO",),
    Sector.VO: ("VO-VMBO-BB", "VO-VMBO-KB", "VO-VMBO-GL", "VO-VMBO-TL", "VO-HAVO", "VO-VWO"),
    Sector.MBO: ("MBO-1", "MBO-2", "MBO-3", "MBO-4"),
    Sector.HO: ("HBO-AD", "HBO-BA", "HBO-MA", "WO-BA", "WO-MA"),
}


def course_sector(system: CodeSystem, sector: Sector | None, level: str) -> Sector:
    """The sector of a new catalogue course: its code system's; a given sector must agree, the level must fit."""
    expected = SYSTEM_SECTOR[system]
    if sector is not None and sector != expected:
        raise invalid_argument(
            [FieldViolation("sector", f"{system.name} courses belong to another sector", INVALID_ENUM)]
        )
    if level not in LEVELS[expected]:
        raise invalid_argument(
            [FieldViolation("level", f"one of {', '.join(LEVELS[expected])} for this sector", INVALID_LEVEL)]
        )
    return expected


@dataclass(frozen=True)
class Address:
    """A Dutch address (adres) of an onderwijslocatie, postcode normalised (1234AB)."""

    street: str = ""
    house_number: int = 0
    house_number_addition: str = ""
    postcode: str = ""
    city: str = ""
    municipality_code: str = ""
    country_code: str = "NL"


@dataclass(frozen=True)
class Period:
    """A validity period: begindatum and an inclusive, optional einddatum."""

    begin: dt.date
    end: dt.date | None = None

    def contains(self, day: dt.date) -> bool:
        return self.begin <= day and (self.end is None or day <= self.end)

    def overlaps(self, other: Period) -> bool:
        starts_before_other_ends = other.end is None or self.begin <= other.end
        other_starts_before_self_ends = self.end is None or other.begin <= self.end
        return starts_before_other_ends and other_starts_before_self_ends


class Dated(Protocol):
    @property
    def begin_date(self) -> dt.date: ...

    @property
    def end_date(self) -> dt.date | None: ...


D = TypeVar("D", bound=Dated)


def period_of(record: Dated) -> Period:
    return Period(record.begin_date, record.end_date)


def period(begin: dt.date, end: dt.date | None) -> Period:
    """A new record's validity period; an einddatum before its begindatum is refused."""
    violations = check_period(begin, end)
    if violations:
        raise invalid_argument(violations)
    return Period(begin, end)


def check_period(begin: dt.date, end: dt.date | None, *, end_field: str = "end_date") -> list[FieldViolation]:
    """An einddatum before the begindatum is refused, naming the end field."""
    if end is not None and end < begin:
        return [FieldViolation(end_field, f"einddatum {end} is before begindatum {begin}", END_BEFORE_BEGIN)]
    return []


def as_of(versions: Iterable[D], day: dt.date) -> D | None:
    """The version valid on the peildatum, or None. Versions of one record never overlap, so at most one fits."""
    for version in versions:
        if period_of(version).contains(day):
            return version
    return None


def first_overlap(existing: Iterable[D], period: Period) -> D | None:
    """The first existing record whose validity overlaps the period (for refusing double facts)."""
    for record in existing:
        if period_of(record).overlaps(period):
            return record
    return None


@dataclass(frozen=True)
class NewVersion:
    """How a correction from a date on splits the current version: it ends the day before, the new one begins."""

    current: Period
    new: Period


def plan_new_version(current: Period, effective: dt.date) -> NewVersion:
    """A new version from `effective` on. The current version must have begun before, and not yet have ended.

    The new version inherits the current einddatum, so a planned end stays planned.
    """
    if effective <= current.begin:
        raise invalid_argument(
            [
                FieldViolation(
                    "effective_date",
                    f"must be after the current version's begindatum {current.begin}; "
                    "an earlier date would overlap the previous version",
                    PERIOD_OVERLAP,
                )
            ]
        )
    if current.end is not None and effective > current.end:
        raise failed_precondition(
            [
                FieldViolation(
                    "effective_date", f"the record ended on {current.end}; a new version cannot follow it", RECORD_ENDED
                )
            ]
        )
    return NewVersion(Period(current.begin, effective - dt.timedelta(days=1)), Period(effective, current.end))


def plan_end(current: Period, end: dt.date) -> Period:
    """Ending sets the einddatum of the current version; it may not precede its begindatum."""
    violations = check_period(current.begin, end)
    if violations:
        raise invalid_argument(violations)
    return Period(current.begin, end)


def not_authorised(field: str, message: str) -> RegistryError:
    return RegistryError(
        grpc.StatusCode.PERMISSION_DENIED, message, NOT_AUTHORISED, (FieldViolation(field, message, NOT_AUTHORISED),)
    )


def require_owner(acting_board: str | None, owner_board: str, *, field: str = "x-board-code") -> None:
    """A board may change only its own records; the sandbox admin (no board) may change any."""
    if acting_board is not None and acting_board != owner_board:
        raise not_authorised(field, f"board {acting_board} may not change records of board {owner_board}")


def require_admin(acting_board: str | None, what: str) -> None:
    if acting_board is not None:
        raise not_authorised("x-board-code", f"only the sandbox admin may {what}; board {acting_board} may not")


# --- Onderwijslocatiegebruik: which board uses a location on a date ---
#
# RIO registers a location once and records which board uses it over which period; the use, not the
# registration, decides who may teach and change things there ("welke locaties bij het onderwijsbestuur in
# gebruik zijn en waar door onderwijsaanbieders onderwijs verzorgd kan worden",
# https://rio-kennisbank.duo.nl/4-mbo-vavo/aa-registreren-onderwijslocatie-mbo-vavo.jsp; "RIO beheren
# onderwijslocatiegebruik" is a role of its own, https://rio-kennisbank.duo.nl/rio-naslag/veelgestelde-vragen-en-systeemmeldingen.jsp).


class LocationUse(Protocol):
    @property
    def board_code(self) -> str: ...

    @property
    def begin_date(self) -> dt.date: ...

    @property
    def end_date(self) -> dt.date | None: ...


U = TypeVar("U", bound=LocationUse)


def user_on(uses: Iterable[U], day: dt.date) -> str | None:
    """The board using the location on the day, or None. Uses of one location never overlap, so one fits."""
    use = as_of(uses, day)
    return use.board_code if use is not None else None


def check_new_use(
    uses: Iterable[U], board_code: str, period: Period, *, field: str = "begin_date"
) -> list[FieldViolation]:
    """A location has one user at a time: a new use (or a use's new period) may follow another board's use,
    not overlap it.

    A handover is the old board ending its use (EndLocationUse) and the new board starting the day after.
    The same board overlapping its own use is a double fact (SBX-VALIDITY-OVERLAP). `uses` are the
    location's other uses; `field` is the one the caller's request set.
    """
    clash = first_overlap(uses, period)
    if clash is None:
        return []
    if clash.board_code == board_code:
        return [
            FieldViolation(
                field,
                f"board {board_code} already uses the location from {clash.begin_date} in an overlapping period",
                PERIOD_OVERLAP,
            )
        ]
    until = f" until {clash.end_date}" if clash.end_date is not None else ""
    return [
        FieldViolation(
            field,
            f"the location is in use by board {clash.board_code} from {clash.begin_date}{until}; "
            "that board ends its use first",
            LOCATION_IN_USE,
        )
    ]


def check_use_within_location(location: Period, period: Period) -> list[FieldViolation]:
    """A use lies within the location's own life: it starts on a day the location exists and ends by its end."""
    if not location.contains(period.begin):
        return [FieldViolation("location_code", f"the location does not exist on {period.begin}", LOCATION_UNKNOWN)]
    if location.end is not None and (period.end is None or period.end > location.end):
        after = location.end + dt.timedelta(days=1)
        return [
            FieldViolation(
                "end_date",
                f"the location ends on {location.end}: it does not exist on {after}, so its use ends by then",
                LOCATION_UNKNOWN,
            )
        ]
    return []


def responsible_board(uses: Sequence[U], day: dt.date) -> str | None:
    """The board that answers for a location on a day: the one using it then.

    On a day no use covers (before the first use, between two, after the last), the board of the latest use
    begun by then, else of the first use: so a board that mistypes a date in its own location's history gets
    the date's own refusal, not AUT401. None when the location has no use at all.
    """
    current = user_on(uses, day)
    if current is not None:
        return current
    ordered = sorted(uses, key=lambda use: use.begin_date)
    begun = [use for use in ordered if use.begin_date <= day]
    nearest = begun[-1] if begun else (ordered[0] if ordered else None)
    return nearest.board_code if nearest is not None else None


def require_user(
    acting_board: str | None, user_board: str | None, day: dt.date, *, field: str = "x-board-code"
) -> None:
    """A board may change a location only while it uses it (on the day the change concerns); the admin always."""
    if acting_board is not None and acting_board != user_board:
        user = f"board {user_board}" if user_board else "no board"
        raise not_authorised(field, f"board {acting_board} does not use this location on {day}; {user} does")


def check_location_of_board(location_user: str | None, provider_board: str, day: dt.date) -> list[FieldViolation]:
    """An offering is given at a location in use by the provider's own board on the day."""
    if location_user != provider_board:
        user = f"board {location_user}" if location_user else "no board"
        return [
            FieldViolation(
                "location_code",
                f"on {day} the location is used by {user}, not by the provider's board {provider_board}",
                LOCATION_NOT_IN_USE,
            )
        ]
    return []


@dataclass(frozen=True)
class OfferingDecision:
    offered: bool
    reason_code: str = ""
    reason: str = ""


def decide_offering(
    *,
    day: dt.date,
    institution_code: str,
    course_code: str,
    location_code: str,
    location_found: bool,
    location_user: str | None,
    course_found: bool,
    provider_board: str | None,
    offering_found: bool,
) -> OfferingDecision:
    """Did the provider with this institution code offer the course at the location on the day?

    Checked in the register's order: location (A01060), course (A01070), then
    the provider (SBX-INSTITUTION-UNKNOWN), the location's use by the provider's
    board on the day (onderwijslocatiegebruik, SBX-LOCATION-NOT-IN-USE) and the
    offering (SBX-NOT-OFFERED). Each argument says what was valid on the day
    (None / False when nothing was); `location_user` is the board using the location then.
    """
    if not location_found:
        return OfferingDecision(False, LOCATION_UNKNOWN, f"location {location_code} does not exist on {day}")
    if not course_found:
        return OfferingDecision(False, COURSE_UNKNOWN, f"course {course_code} does not exist on {day}")
    if provider_board is None:
        return OfferingDecision(
            False, INSTITUTION_UNKNOWN, f"no provider with institution code {institution_code} on {day}"
        )
    if location_user != provider_board:
        user = f"board {location_user}" if location_user else "no board"
        return OfferingDecision(
            False,
            LOCATION_NOT_IN_USE,
            f"on {day} location {location_code} is used by {user}, not by the provider's board {provider_board}",
        )
    if not offering_found:
        return OfferingDecision(
            False, NOT_OFFERED, f"{institution_code} does not offer course {course_code} at {location_code} on {day}"
        )
    return OfferingDecision(True)


# --- Codes ---

# Per kind: its letter, the digits each side of it, and the first number of the left part.
_RIO_SHAPE = {
    "board": ("B", 3, 100),
    "provider": ("A", 3, 100),
    "location": ("X", 3, 100),
    "course_unit": ("O", 4, 1000),
}


def rio_code_number(kind: str, code: str) -> int:
    """Inverse of services.common.identifiers.format_rio_code: "101A002" -> 1002, "1000O0003" -> 3."""
    letter, width, first = _RIO_SHAPE[kind]
    left, right = code[:width], code[width + 1 :]
    if len(code) != 2 * width + 1 or code[width] != letter or not (left.isdigit() and right.isdigit()):
        raise ValueError(f"not a {kind} code: {code!r}")
    return (int(left) - first) * 10**width + int(right)


def is_course_unit_code(code: str) -> bool:
    """An opleidingseenheidcode (nnnnOnnnn), as opposed to a national course code (CREBO, ISAT, ILT, po)."""
    return _is_rio_code("course_unit", code)


def next_rio_number(kind: str, existing: Sequence[str]) -> int:
    """The number after the highest existing code of a kind (1 when there is none)."""
    numbers = [rio_code_number(kind, code) for code in existing if _is_rio_code(kind, code)]
    return max(numbers, default=0) + 1


def _is_rio_code(kind: str, code: str) -> bool:
    try:
        rio_code_number(kind, code)
    except ValueError:
        return False
    return True
