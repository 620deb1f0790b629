"""Shape checks of ROD requests: each problem becomes a FieldViolation naming the field (INVALID_ARGUMENT)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from google.type.date_pb2 import Date

from services._gen.registry.v1 import rod_pb2
from services.common.dates import from_proto_date
from services.common.errors import FieldViolation
from services.common.identifiers import (
    InvalidIdentifierError,
    validate_bsn,
    validate_institution_code,
    validate_onderwijsnummer,
)
from services.rod.store import PupilDetails

REQUIRED = "REQUIRED"
INVALID = "INVALID"


class Violations(list[FieldViolation]):
    def add(self, field: str, description: str, code: str = INVALID) -> None:
        self.append(FieldViolation(field, description, code))


def date_field(value: Date, field: str, violations: Violations, *, required: bool) -> dt.date | None:
    try:
        result = from_proto_date(value)
    except ValueError:
        violations.add(field, "is not a real calendar date", "INVALID_DATE")
        return None
    if result is None and required:
        violations.add(field, "is required", REQUIRED)
    return result


def document_id(value: str, violations: Violations) -> None:
    try:
        uuid.UUID(value)
    except ValueError:
        violations.add("document_id", "must be a UUID" if value else "is required", INVALID if value else REQUIRED)


def institution_code(value: str, violations: Violations, field: str = "institution_code") -> None:
    if not value:
        violations.add(field, "is required", REQUIRED)
        return
    try:
        validate_institution_code(value)
    except InvalidIdentifierError as error:
        violations.add(field, str(error))


def pupil_number(pupil: rod_pb2.PupilId, violations: Violations, field: str = "pupil") -> str:
    """The BSN or onderwijsnummer, checked against its 11-proof; "" when unset or wrong."""
    kind = pupil.WhichOneof("id")
    try:
        if kind == "bsn":
            return validate_bsn(pupil.bsn)
        if kind == "onderwijsnummer":
            return validate_onderwijsnummer(pupil.onderwijsnummer)
    except InvalidIdentifierError as error:
        violations.add(f"{field}.{kind}", str(error), "INVALID_BSN" if kind == "bsn" else "INVALID_ONDERWIJSNUMMER")
        return ""
    violations.add(field, "set bsn or onderwijsnummer", REQUIRED)
    return ""


def pupil_details(details: rod_pb2.PupilDetails, violations: Violations, field: str) -> PupilDetails | None:
    before = len(violations)
    if not details.surname.strip():
        violations.add(f"{field}.surname", "is required", REQUIRED)
    if not details.given_names.strip():
        violations.add(f"{field}.given_names", "is required", REQUIRED)
    birth = date_field(details.birth_date, f"{field}.birth_date", violations, required=True)
    address = details.address
    postcode = address.postcode.replace(" ", "").upper()
    if not (len(postcode) == 6 and postcode[:4].isdigit() and postcode[4:].isalpha()):
        violations.add(f"{field}.address.postcode", "must be 4 digits + 2 letters, like 1234AB")
    if address.house_number <= 0:
        violations.add(f"{field}.address.house_number", "is required", REQUIRED)
    if len(violations) > before or birth is None:
        return None
    return PupilDetails(
        given_names=details.given_names.strip(),
        surname_prefix=details.surname_prefix.strip(),
        surname=details.surname.strip(),
        birth_date=birth,
        sex=int(details.sex),
        postcode=postcode,
        house_number=address.house_number,
        house_number_addition=address.house_number_addition.strip(),
    )


@dataclass(frozen=True)
class PeriodShape:
    begin: dt.date
    end: dt.date | None
    location_code: str
    course_code: str
    year: int


def periods(items: Sequence[rod_pb2.EnrolmentPeriod], violations: Violations) -> list[PeriodShape]:
    """Periods oldest first, each with a begin, an end not before it, a location and a course, none overlapping."""
    if not items:
        violations.add("periods", "at least one period is needed", REQUIRED)
        return []
    result: list[PeriodShape] = []
    for index, item in enumerate(items):
        field = f"periods[{index}]"
        begin = date_field(item.begin_date, f"{field}.begin_date", violations, required=True)
        end = date_field(item.end_date, f"{field}.end_date", violations, required=False)
        if not item.location_code:
            violations.add(f"{field}.location_code", "is required", REQUIRED)
        if not item.course_code:
            violations.add(f"{field}.course_code", "is required", REQUIRED)
        if item.year < 0:
            violations.add(f"{field}.year", "must not be negative")
        if begin is not None and end is not None and end < begin:
            violations.add(f"{field}.end_date", "is before begin_date", "END_BEFORE_BEGIN")
        if begin is None:
            continue
        if result:
            previous = result[-1]
            if previous.end is None or previous.end >= begin:
                violations.add(f"{field}.begin_date", "overlaps the previous period", "PERIODS_OVERLAP")
        result.append(PeriodShape(begin, end, item.location_code, item.course_code, item.year))
    return result


def sequence(value: int, violations: Violations) -> None:
    if value < 1:
        violations.add("sequence", "must be 1 or more", INVALID)
