"""ROD's protobuf <-> domain mapping: requests decoded and shape-checked (INVALID_ARGUMENT per field), answers encoded.

Also the peers' answers and change events (RIO, BRP) into ROD's domain
types, and the feedback's wire message, which the outbox stores as written.
Every string is checked against its column (length, no NUL) and every
number against its 32-bit column before the database sees it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable, Sequence
from typing import TypeVar

from google.type.date_pb2 import Date

from services._gen.registry.v1 import brp_pb2, common_pb2, rio_pb2, rod_pb2
from services.common import codes
from services.common.dates import from_proto_date, to_proto_date, to_timestamp
from services.common.errors import RegistryError, invalid_argument
from services.common.identifiers import (
    InvalidIdentifierError,
    is_valid_bsn,
    validate_bsn,
    validate_institution_code,
    validate_onderwijsnummer,
)
from services.common.paging import Page, cut, page_of
from services.rod import funding, rules
from services.rod.rules import MAX_INT32, REQUIRED, TOO_LONG, Violations

SECTORS = {
    common_pb2.SECTOR_PO: funding.Sector.PO,
    common_pb2.SECTOR_VO: funding.Sector.VO,
    common_pb2.SECTOR_MBO: funding.Sector.MBO,
    common_pb2.SECTOR_HO: funding.Sector.HO,
}
_STATUS = {
    rules.EnrolmentStatus.ACTIVE: rod_pb2.ENROLMENT_STATUS_ACTIVE,
    rules.EnrolmentStatus.ENDED: rod_pb2.ENROLMENT_STATUS_ENDED,
    rules.EnrolmentStatus.DELETED: rod_pb2.ENROLMENT_STATUS_DELETED,
}
_T = TypeVar("_T")
# The sector fields' wire enums and their domain values; UNSPECIFIED (0) is "not sent".
_LEERWEG: dict[int, rules.Leerweg] = {
    rod_pb2.MBO_LEERWEG_BOL: rules.Leerweg.BOL,
    rod_pb2.MBO_LEERWEG_BBL: rules.Leerweg.BBL,
}
_INTENSITY: dict[int, rules.Intensity] = {
    rod_pb2.MBO_INTENSITY_VOLTIJD: rules.Intensity.VOLTIJD,
    rod_pb2.MBO_INTENSITY_DEELTIJD: rules.Intensity.DEELTIJD,
}
_STUDY_MODE: dict[int, rules.StudyMode] = {
    rod_pb2.HO_STUDY_MODE_VOLTIJD: rules.StudyMode.VOLTIJD,
    rod_pb2.HO_STUDY_MODE_DEELTIJD: rules.StudyMode.DEELTIJD,
    rod_pb2.HO_STUDY_MODE_DUAAL: rules.StudyMode.DUAAL,
}
# Column sizes (services.rod.tables); the mutation path checks idempotency keys.
_ENROLMENT_ID, _CODE, _CAUSE_ID, _SUBSCRIBER, _END_REASON = 36, 20, 120, 200, 20
_GIVEN_NAMES, _SURNAME_PREFIX, _SURNAME, _HOUSE_NUMBER_ADDITION = 200, 50, 200, 20
# Dates ROD can count with: count dates are looked up to two years past a period's begin.
_EARLIEST, _LATEST = dt.date(1900, 1, 1), dt.date(2999, 12, 31)


def _raise_if(violations: Violations) -> None:
    if violations:
        raise invalid_argument(violations)


# --- field checks ---


def text(value: str, field: str, violations: Violations, *, max_length: int, required: bool = False) -> str:
    """A string that fits its column: at most max_length characters and no NUL (PostgreSQL refuses NUL)."""
    if required and not value:
        violations.add(field, "is required", REQUIRED)
    elif len(value) > max_length:
        violations.add(field, f"at most {max_length} characters", TOO_LONG)
    elif "\x00" in value:
        violations.add(field, "must not contain NUL characters", rules.INVALID)
    return value


def date_field(value: Date, field: str, violations: Violations, *, required: bool) -> dt.date | None:
    try:
        result = from_proto_date(value)
    except ValueError:
        violations.add(field, "is not a real calendar date", rules.INVALID_DATE)
        return None
    if result is None:
        if required:
            violations.add(field, "is required", REQUIRED)
        return None
    if not _EARLIEST <= result <= _LATEST:
        violations.add(field, f"must lie between {_EARLIEST} and {_LATEST}", rules.INVALID_DATE)
        return None
    return result


def document_id(value: str, violations: Violations) -> str:
    try:
        if len(value) > _ENROLMENT_ID:
            raise ValueError(value)
        uuid.UUID(value)
    except ValueError:
        violations.add(
            "document_id", "must be a UUID" if value else "is required", rules.NOT_A_UUID if value else REQUIRED
        )
    return value


def enrolment_id(value: str, violations: Violations, *, required: bool = True) -> str:
    return text(value, "enrolment_id", violations, max_length=_ENROLMENT_ID, required=required)


def institution_code(value: str, violations: Violations, field: str = "institution_code") -> str:
    if not value:
        violations.add(field, "is required", REQUIRED)
        return value
    try:
        validate_institution_code(value)
    except InvalidIdentifierError as error:
        violations.add(field, str(error))
    return value


def pupil_number(pupil: rod_pb2.PupilId, violations: Violations, field: str = "pupil") -> str:
    """The BSN or onderwijsnummer, checked against its 11-proof; "" when unset or wrong."""
    kind = pupil.WhichOneof("id")
    try:
        if kind == "bsn":
            return validate_bsn(pupil.bsn)
        if kind == "onderwijsnummer":
            return validate_onderwijsnummer(pupil.onderwijsnummer)
    except InvalidIdentifierError as error:
        name = f"{field}.{kind}" if field else str(kind)
        violations.add(name, str(error), rules.INVALID_BSN if kind == "bsn" else rules.INVALID_ONDERWIJSNUMMER)
        return ""
    violations.add(field, "set bsn or onderwijsnummer", REQUIRED)
    return ""


def pupil_details(details: rod_pb2.PupilDetails, violations: Violations, field: str) -> rules.PupilDetails | None:
    before = len(violations)
    text(details.surname.strip(), f"{field}.surname", violations, max_length=_SURNAME, required=True)
    text(details.given_names.strip(), f"{field}.given_names", violations, max_length=_GIVEN_NAMES, required=True)
    text(details.surname_prefix.strip(), f"{field}.surname_prefix", violations, max_length=_SURNAME_PREFIX)
    birth = date_field(details.birth_date, f"{field}.birth_date", violations, required=True)
    address = details.address
    postcode = rules.normal_postcode(address.postcode)
    if not (len(postcode) == 6 and postcode[:4].isdigit() and postcode[4:].isalpha() and postcode.isascii()):
        violations.add(f"{field}.address.postcode", "must be 4 digits + 2 letters, like 1234AB")
    if address.house_number <= 0:
        violations.add(f"{field}.address.house_number", "is required", REQUIRED)
    addition = address.house_number_addition.strip()
    text(addition, f"{field}.address.house_number_addition", violations, max_length=_HOUSE_NUMBER_ADDITION)
    if len(violations) > before or birth is None:
        return None
    return rules.PupilDetails(
        given_names=details.given_names.strip(),
        surname_prefix=details.surname_prefix.strip(),
        surname=details.surname.strip(),
        birth_date=birth,
        sex=int(details.sex),
        postcode=postcode,
        house_number=address.house_number,
        house_number_addition=addition,
    )


def periods(items: Sequence[rod_pb2.EnrolmentPeriod], violations: Violations) -> tuple[rules.PeriodShape, ...]:
    """Periods oldest first, each with a begin, an end not before it, a location and a course, none overlapping."""
    if not items:
        violations.add("periods", "at least one period is needed", REQUIRED)
        return ()
    result: list[rules.PeriodShape] = []
    for index, item in enumerate(items):
        field = f"periods[{index}]"
        begin = date_field(item.begin_date, f"{field}.begin_date", violations, required=True)
        end = date_field(item.end_date, f"{field}.end_date", violations, required=False)
        # Optional in the shape: a po or vo school with one location may leave it out (rules.located_periods).
        text(item.location_code, f"{field}.location_code", violations, max_length=_CODE)
        text(item.course_code, f"{field}.course_code", violations, max_length=_CODE, required=True)
        if item.year < 0:
            violations.add(f"{field}.year", "must not be negative")
        if begin is not None and end is not None and end < begin:
            violations.add(f"{field}.end_date", "is before begin_date", rules.END_BEFORE_BEGIN)
        if begin is None:
            continue
        if result:
            previous = result[-1]
            if previous.end is None or previous.end >= begin:
                violations.add(f"{field}.begin_date", "overlaps the previous period", rules.PERIODS_OVERLAP)
        result.append(rules.PeriodShape(begin, end, item.location_code, item.course_code, item.year))
    return tuple(result)


def _enum(value: int, known: dict[int, _T], field: str, violations: Violations) -> _T | None:
    """A sector field's enum: None when unset (0), the domain value when known, else a shape violation."""
    if value == 0:
        return None
    if value not in known:
        violations.add(field, f"unknown value {value}", rules.INVALID_ENUM)
        return None
    return known[value]


def sector_fields(
    request: rod_pb2.RegisterEnrolmentRequest | rod_pb2.ChangeEnrolmentRequest, violations: Violations
) -> rules.SectorFields:
    """Mbo leerweg and intensity, ho mode of study; whether they fit the school's sector is a functional check."""
    return rules.SectorFields(
        leerweg=_enum(request.mbo_leerweg, _LEERWEG, "mbo_leerweg", violations),
        intensity=_enum(request.mbo_intensity, _INTENSITY, "mbo_intensity", violations),
        study_mode=_enum(request.ho_study_mode, _STUDY_MODE, "ho_study_mode", violations),
    )


def sequence(value: int, violations: Violations) -> int:
    if not 1 <= value <= MAX_INT32:
        violations.add("sequence", f"must be 1 to {MAX_INT32}", rules.OUT_OF_RANGE)
    return value


def cursor(value: int, field: str, violations: Violations) -> int:
    if not 0 <= value <= MAX_INT32:
        violations.add(field, f"must be 0 to {MAX_INT32}", rules.OUT_OF_RANGE)
    return value


def subscriber(value: str, violations: Violations, *, required: bool) -> str:
    if required and not value:
        violations.add("subscriber", "is required (at most 200 characters)", REQUIRED)
        return value
    return text(value, "subscriber", violations, max_length=_SUBSCRIBER)


# --- requests into commands ---


def identify_pupil(request: rod_pb2.IdentifyPupilRequest) -> rules.IdentifyPupil:
    violations = Violations()
    if request.bsn:
        bsn = pupil_number(rod_pb2.PupilId(bsn=request.bsn), violations, field="")
        stated = date_field(request.details.birth_date, "details.birth_date", violations, required=False)
        _raise_if(violations)
        return rules.IdentifyPupil(bsn=bsn, stated_birth_date=stated)
    details = pupil_details(request.details, violations, "details")
    _raise_if(violations)
    return rules.IdentifyPupil(details=details)


def register_enrolment(
    request: rod_pb2.RegisterEnrolmentRequest, *, authorise: Callable[[str], None]
) -> rules.RegisterEnrolment:
    """The command; `authorise(institution_code)` runs once the code is well-formed (authorisation before shape)."""
    violations = Violations()
    institution_code(request.institution_code, violations)
    if not violations:
        authorise(request.institution_code)
    document_id(request.document_id, violations)
    number = ""
    details = None
    if request.HasField("pupil"):
        number = pupil_number(request.pupil, violations)
    elif request.HasField("pupil_details"):
        details = pupil_details(request.pupil_details, violations, "pupil_details")
    else:
        violations.add("pupil", "set pupil (bsn or onderwijsnummer) or pupil_details", REQUIRED)
    shapes = periods(request.periods, violations)
    sequence(request.sequence, violations)
    fields = sector_fields(request, violations)
    _raise_if(violations)
    return rules.RegisterEnrolment(
        document_id=request.document_id,
        institution_code=request.institution_code,
        pupil_number=number,
        pupil_has_bsn=request.pupil.WhichOneof("id") == "bsn",
        details=details,
        periods=shapes,
        sequence=request.sequence,
        first_enrolment=request.ho_first_enrolment,
        fields=fields,
    )


def register_enrolments(
    request: rod_pb2.RegisterEnrolmentsRequest, *, authorise: Callable[[str], None]
) -> list[tuple[str, rules.RegisterEnrolment | RegistryError]]:
    """(document id, command) per item, or (document id, error) for an item refused on its shape or its school.

    The batch's size is checked first (refusing the whole call); an item's refusal is its own."""
    rules.require_batch_size(len(request.enrolments))
    items: list[tuple[str, rules.RegisterEnrolment | RegistryError]] = []
    for item in request.enrolments:
        try:
            items.append((item.document_id, register_enrolment(item, authorise=authorise)))
        except RegistryError as refused:
            items.append((item.document_id, refused))
    return items


def change_enrolment(request: rod_pb2.ChangeEnrolmentRequest) -> rules.ChangeEnrolment:
    violations = Violations()
    document_id(request.document_id, violations)
    enrolment_id(request.enrolment_id, violations)
    shapes = periods(request.periods, violations)
    sequence(request.sequence, violations)
    fields = sector_fields(request, violations)
    _raise_if(violations)
    return rules.ChangeEnrolment(
        request.document_id, request.enrolment_id, shapes, request.sequence, request.ho_first_enrolment, fields
    )


def end_enrolment(request: rod_pb2.EndEnrolmentRequest) -> rules.EndEnrolment:
    violations = Violations()
    document_id(request.document_id, violations)
    enrolment_id(request.enrolment_id, violations)
    end = date_field(request.end_date, "end_date", violations, required=True)
    sequence(request.sequence, violations)
    text(request.end_reason_code, "end_reason_code", violations, max_length=_END_REASON)
    _raise_if(violations)
    assert end is not None
    return rules.EndEnrolment(request.document_id, request.enrolment_id, end, request.sequence, request.end_reason_code)


def delete_enrolment(request: rod_pb2.DeleteEnrolmentRequest) -> rules.DeleteEnrolment:
    violations = Violations()
    document_id(request.document_id, violations)
    enrolment_id(request.enrolment_id, violations)
    _raise_if(violations)
    return rules.DeleteEnrolment(request.document_id, request.enrolment_id)


def get_enrolment(request: rod_pb2.GetEnrolmentRequest) -> str:
    violations = Violations()
    enrolment_id(request.enrolment_id, violations, required=False)
    _raise_if(violations)
    return request.enrolment_id


def list_enrolments(request: rod_pb2.ListEnrolmentsRequest) -> rules.ListEnrolments:
    """The filters and page; whether a school or a pupil is named is for the use case (it knows the caller)."""
    violations = Violations()
    number = pupil_number(request.pupil, violations) if request.HasField("pupil") else ""
    if request.institution_code:
        institution_code(request.institution_code, violations)
    active_on = date_field(request.active_on, "active_on", violations, required=False)
    _raise_if(violations)
    page = page_of(request.page)
    return rules.ListEnrolments(request.institution_code, number, active_on, page.size, page.after)


def follow_feedback(request: rod_pb2.StreamFeedbackRequest) -> rules.FollowFeedback:
    violations = Violations()
    for index, code in enumerate(request.institution_codes):
        institution_code(code, violations, f"institution_codes[{index}]")
    cursor(request.after_cursor, "after_cursor", violations)
    subscriber(request.subscriber, violations, required=request.resume_from_acknowledged)
    _raise_if(violations)
    return rules.FollowFeedback(
        tuple(request.institution_codes), request.after_cursor, request.subscriber, request.resume_from_acknowledged
    )


def acknowledge_feedback(request: rod_pb2.AcknowledgeFeedbackRequest) -> rules.AcknowledgeFeedback:
    violations = Violations()
    subscriber(request.subscriber, violations, required=True)
    cursor(request.cursor, "cursor", violations)
    _raise_if(violations)
    return rules.AcknowledgeFeedback(request.subscriber, request.cursor)


def list_feedback(request: rod_pb2.ListFeedbackRequest) -> rules.ListFeedback:
    violations = Violations()
    text(request.cause_id, "cause_id", violations, max_length=_CAUSE_ID)
    if request.institution_code:
        institution_code(request.institution_code, violations)
    enrolment_id(request.enrolment_id, violations, required=False)
    if request.trigger not in rod_pb2.FeedbackTrigger.values():
        violations.add("trigger", "unknown trigger")
    _raise_if(violations)
    page = page_of(request.page, numeric=True)
    return rules.ListFeedback(
        request.cause_id, request.trigger, request.institution_code, request.enrolment_id, page.size, page.after_int
    )


def funding_count_query(request: rod_pb2.GetFundingCountRequest) -> tuple[str, dt.date]:
    violations = Violations()
    institution_code(request.institution_code, violations)
    count_date = date_field(request.count_date, "count_date", violations, required=True)
    _raise_if(violations)
    assert count_date is not None
    return request.institution_code, count_date


# --- domain into answers ---


def pupil_id(number: str) -> rod_pb2.PupilId:
    if is_valid_bsn(number):
        return rod_pb2.PupilId(bsn=number)
    return rod_pb2.PupilId(onderwijsnummer=number)


def decision(value: funding.Decision) -> rod_pb2.FundingDecision:
    return rod_pb2.FundingDecision(
        count_date=to_proto_date(value.count_date),
        funded=value.funded,
        status=rod_pb2.FUNDING_STATUS_FINAL if value.final else rod_pb2.FUNDING_STATUS_PROVISIONAL,
        reason_codes=list(value.reason_codes),
        reason=value.reason,
        status_code=value.status_code,
    )


def signal(value: funding.Signal) -> rod_pb2.Signal:
    return rod_pb2.Signal(code=value.code, text=value.text, parameters=dict(value.parameters))


def _wire(known: dict[int, _T], value: _T | None) -> int:
    return next((number for number, item in known.items() if item == value), 0) if value is not None else 0


def enrolment(state: rules.EnrolmentState) -> rod_pb2.Enrolment:
    return rod_pb2.Enrolment(
        enrolment_id=state.enrolment_id,
        pupil=pupil_id(state.pupil_number),
        institution_code=state.institution_code,
        periods=[
            rod_pb2.EnrolmentPeriod(
                begin_date=to_proto_date(p.begin),
                end_date=to_proto_date(p.end),
                location_code=p.location_code,
                course_code=p.course_code,
                year=p.year,
            )
            for p in state.periods
        ],
        sequence=state.sequence,
        ho_first_enrolment=state.first_enrolment,
        mbo_leerweg=_wire(_LEERWEG, state.fields.leerweg),  # type: ignore[arg-type]
        mbo_intensity=_wire(_INTENSITY, state.fields.intensity),  # type: ignore[arg-type]
        ho_study_mode=_wire(_STUDY_MODE, state.fields.study_mode),  # type: ignore[arg-type]
        end_reason_code=state.end_reason,
        status=_STATUS[state.status],
        funding=[decision(d) for d in state.decisions],
        updated_at=to_timestamp(state.updated_at),
    )


def enrolment_response(outcome: rules.EnrolmentOutcome) -> rod_pb2.EnrolmentResponse:
    return rod_pb2.EnrolmentResponse(
        enrolment=enrolment(outcome.enrolment),
        outcome=int(outcome.outcome),  # type: ignore[arg-type]
        signals=[signal(s) for s in outcome.signals],
        assigned_onderwijsnummer=outcome.assigned_onderwijsnummer,
        feedback_cursor=outcome.feedback_cursor,
    )


def bulk_response(items: Sequence[rules.BulkItem]) -> rod_pb2.RegisterEnrolmentsResponse:
    response = rod_pb2.RegisterEnrolmentsResponse()
    for item in items:
        result = response.results.add(index=item.index, document_id=item.document_id)
        if item.outcome is not None:
            result.accepted.CopyFrom(enrolment_response(item.outcome))
            response.accepted += 1
        elif item.refusal is not None:
            refusal = item.refusal
            result.refused.CopyFrom(
                rod_pb2.ItemRefusal(
                    status_code=refusal.code.value[0],
                    reason=refusal.reason,
                    message=refusal.message,
                    violations=[
                        rod_pb2.ItemViolation(field=v.field, description=v.description, code=v.code)
                        for v in refusal.violations
                    ],
                )
            )
            response.refused += 1
    return response


def identify_response(identified: rules.IdentifiedPupil) -> rod_pb2.IdentifyPupilResponse:
    return rod_pb2.IdentifyPupilResponse(
        pupil=pupil_id(identified.pupil_number), newly_assigned=identified.newly_assigned
    )


def enrolment_list(
    states: Sequence[rules.EnrolmentState], query: rules.ListEnrolments
) -> rod_pb2.ListEnrolmentsResponse:
    items, page = cut(states, Page(query.page_size, query.after_id), lambda s: s.enrolment_id)
    return rod_pb2.ListEnrolmentsResponse(enrolments=[enrolment(s) for s in items], page=page)


def feedback_payload(entry: rules.FeedbackEntry) -> bytes:
    """The Feedback message as the outbox stores it: without cursor and committed_at, which the reader fills in."""
    trigger = int(entry.trigger)
    return rod_pb2.Feedback(
        institution_code=entry.institution_code,
        enrolment_id=entry.enrolment_id,
        pupil=pupil_id(entry.pupil_number) if entry.pupil_number else None,
        outcome=int(entry.outcome),  # type: ignore[arg-type]
        trigger=trigger,  # type: ignore[arg-type]
        funding=[decision(d) for d in entry.decisions],
        signals=[signal(s) for s in entry.signals],
        document_id=entry.document_id,
        cause=rod_pb2.FeedbackCause(trigger=trigger, id=entry.cause_id),  # type: ignore[arg-type]
    ).SerializeToString()


def feedback(entry: rules.OutboxEntry) -> rod_pb2.Feedback:
    message = rod_pb2.Feedback.FromString(entry.payload)
    message.cursor = entry.cursor
    message.committed_at.CopyFrom(to_timestamp(entry.committed_at))
    return message


def feedback_list(entries: Sequence[rules.OutboxEntry], query: rules.ListFeedback) -> rod_pb2.ListFeedbackResponse:
    items, page = cut(entries, Page(query.page_size, str(query.after_cursor or "")), lambda e: e.cursor)
    return rod_pb2.ListFeedbackResponse(feedback=[feedback(e) for e in items], page=page)


def acknowledged(cursor: int) -> rod_pb2.AcknowledgeFeedbackResponse:
    return rod_pb2.AcknowledgeFeedbackResponse(acknowledged_cursor=cursor)


def funding_count(count: rules.FundingCount) -> rod_pb2.FundingCount:
    return rod_pb2.FundingCount(
        institution_code=count.institution_code,
        count_date=to_proto_date(count.count_date),
        status=rod_pb2.FUNDING_STATUS_FINAL if count.final else rod_pb2.FUNDING_STATUS_PROVISIONAL,
        funded_pupils=len(count.funded_enrolment_ids),
        funded_enrolment_ids=list(count.funded_enrolment_ids),
    )


def purged(deleted: int) -> common_pb2.PurgeSandboxResponse:
    return common_pb2.PurgeSandboxResponse(deleted=deleted)


# --- peers' answers and changes into domain types ---


def offering_check(answer: rio_pb2.CheckOfferingResponse) -> rules.OfferingCheck:
    if not answer.offered:
        return rules.OfferingCheck(False, answer.reason_code, answer.reason)
    return rules.OfferingCheck(
        True,
        sector=SECTORS.get(answer.provider.sector) or SECTORS.get(answer.course.sector),
        offering_id=answer.offering.offering_id,
        offering_end=from_proto_date(answer.offering.validity.end_date),
    )


def brp_facts(person: brp_pb2.Person, *, bsn: str = "", sequence: int = 0) -> rules.BrpFacts:
    """ROD's facts of a BRP person (a change's own sequence wins when the person copy lacks one)."""
    return rules.BrpFacts(
        bsn=bsn or person.bsn,
        birth_date=from_proto_date(person.birth_date) if person.HasField("birth_date") else None,
        death_date=from_proto_date(person.death_date) if person.HasField("death_date") else None,
        emigration_date=from_proto_date(person.emigration_date) if person.HasField("emigration_date") else None,
        sequence=max(person.last_sequence, sequence),
        given_names=person.given_names,
        surname_prefix=person.surname_prefix,
        surname=person.surname,
        sex=int(person.sex),
        abroad=tuple(
            (begin, from_proto_date(stay.end_date) if stay.HasField("end_date") else None)
            for stay in person.residence_abroad
            if (begin := from_proto_date(stay.start_date)) is not None
        ),
    )


def rio_change(change: rio_pb2.RioChange) -> rules.RioChanged | None:
    """The RIO change as one that can alter a decision, or None."""
    record = change.WhichOneof("record")
    if record == "location_use":
        use = change.location_use
        end = from_proto_date(use.validity.end_date)
        changed = rules.LocationUseChanged(change.sandbox_id, change.cursor, use.location_code, use.board_code, end)
        return changed if use.location_code and use.board_code else None
    if record == "location":
        code, end = change.location.location_code, from_proto_date(change.location.validity.end_date)
        return rules.RioEndChanged(change.sandbox_id, change.cursor, rules.LOCATION, code, end) if code else None
    if record == "provider":
        code, end = change.provider.institution_code, from_proto_date(change.provider.validity.end_date)
        return rules.RioEndChanged(change.sandbox_id, change.cursor, rules.PROVIDER, code, end) if code else None
    # A new offering has no enrolments yet; only a changed or ended one can alter a decision.
    if record != "course_offering" or change.change_kind == rio_pb2.RIO_CHANGE_KIND_CREATED:
        return None
    offering = change.course_offering
    return rules.OfferingChanged(
        change.sandbox_id, change.cursor, offering.offering_id, from_proto_date(offering.validity.end_date)
    )


def person_change(change: brp_pb2.PersonChange) -> rules.PersonChanged:
    bsn = change.bsn or change.person.bsn
    facts = brp_facts(change.person, bsn=bsn, sequence=change.sequence)
    if change.HasField("effective_date"):
        facts = dataclasses.replace(facts, effective_date=from_proto_date(change.effective_date))
    return rules.PersonChanged(change.sandbox_id, change.cursor, change.message_id, facts)


def code_list(request: rod_pb2.ListCodesRequest) -> rod_pb2.ListCodesResponse:
    """The code table (services/common/codes.toml), filtered by kind and register.

    A filter value the table does not have is refused rather than answered with an empty list, so a
    mistyped filter (`"notices"`) is not mistaken for a kind without codes."""
    violations = Violations()
    for name, value, allowed in (("kind", request.kind, codes.KINDS), ("register", request.register, codes.REGISTERS)):
        if value and value not in allowed:
            violations.add(name, f"unknown value {value!r}: one of {', '.join(allowed)}", rules.INVALID_ENUM)
    _raise_if(violations)
    return rod_pb2.ListCodesResponse(
        codes=[
            rod_pb2.CodeDescription(
                code=entry.code,
                register=entry.register,
                kind=entry.kind,
                text_nl=entry.nl,
                text_en=entry.en,
                action=entry.action,
                source=entry.source,
                sandbox_own=entry.sandbox_own,
            )
            for entry in sorted(codes.table().values(), key=lambda e: e.code)
            if (not request.kind or entry.kind == request.kind)
            and (not request.register or entry.register == request.register)
        ]
    )
